// CodeMirror 6 for the playground, bundled by ./build.sh into static/js/editor.bundle.js.
// It enhances a <textarea>: the form keeps working without JavaScript.
import { basicSetup } from "codemirror";
import { Decoration, EditorView, GutterMarker, gutter, keymap } from "@codemirror/view";
import { Compartment, EditorSelection, EditorState, Prec, RangeSet, StateEffect, StateField } from "@codemirror/state";
import { HighlightStyle, indentUnit, syntaxHighlighting } from "@codemirror/language";
import { indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { tags as t } from "@lezer/highlight";
import { vim } from "@replit/codemirror-vim";
import { emacs } from "@replit/codemirror-emacs";

// Colours are the page's CSS variables (static/css/app.css), so light and dark follow
// the system setting with the contrast the page itself is checked for.
const highlight = HighlightStyle.define([
  { tag: [t.keyword, t.controlKeyword, t.definitionKeyword, t.moduleKeyword, t.operatorKeyword], color: "var(--syntax-keyword)" },
  { tag: [t.string, t.special(t.string), t.regexp], color: "var(--syntax-string)" },
  { tag: [t.number, t.bool, t.null, t.atom], color: "var(--syntax-number)" },
  { tag: [t.comment, t.lineComment, t.blockComment], color: "var(--syntax-comment)", fontStyle: "italic" },
  { tag: [t.function(t.variableName), t.function(t.propertyName), t.definition(t.variableName)], color: "var(--syntax-function)" },
  { tag: [t.className, t.typeName, t.standard(t.variableName), t.self], color: "var(--syntax-type)" },
  { tag: t.invalid, color: "var(--danger)" },
]);
const theme = EditorView.theme({
  "&": { color: "var(--text)", backgroundColor: "var(--code-bg)" },
  ".cm-content": { caretColor: "var(--text)" },
  ".cm-cursor, .cm-dropCursor": { borderLeftColor: "var(--text)" },
  ".cm-gutters": { backgroundColor: "var(--code-bg)", color: "var(--muted)", borderRight: "1px solid var(--border)" },
  ".cm-activeLine, .cm-activeLineGutter": { backgroundColor: "var(--active-line)" },
  ".cm-activeLineGutter": { color: "var(--text)" },
  "&.cm-focused .cm-selectionBackground, .cm-selectionBackground, .cm-content ::selection": { backgroundColor: "var(--selection)" },
  ".cm-matchingBracket": { backgroundColor: "var(--selection)", color: "inherit" },
  ".cm-error-line": { backgroundColor: "var(--danger-soft)", boxShadow: "inset 3px 0 var(--danger)" },
  ".cm-heat-line": { backgroundColor: "var(--heat-soft)", boxShadow: "inset 3px 0 var(--heat)" },
  ".cm-heat-gutter": { width: "2.25rem" },
  ".cm-heat-gutter .cm-gutterElement": { display: "flex", alignItems: "center", padding: "0 2px" },
  ".cm-heat-marker": { display: "block", height: "0.6em", minWidth: "2px", borderRadius: "2px", backgroundColor: "var(--heat)" },
  ".cm-heat-stale .cm-heat-marker": { opacity: "0.3" },
});

// One line of the editor marked with `className`, moved by edits; an effect's line
// number (or null) replaces it, and any of the effects `clearedBy` clears it.
function lineMark(className, clearedBy = []) {
  const mark = StateEffect.define();
  const field = StateField.define({
    create: () => Decoration.none,
    update(marks, transaction) {
      marks = marks.map(transaction.changes);
      for (const effect of transaction.effects) {
        if (clearedBy.some((type) => effect.is(type))) marks = Decoration.none;
        if (!effect.is(mark)) continue;
        const number = effect.value;
        marks = number && number <= transaction.state.doc.lines
          ? Decoration.set([Decoration.line({ class: className }).range(transaction.state.doc.line(number).from)])
          : Decoration.none;
      }
      return marks;
    },
    provide: (f) => EditorView.decorations.from(f),
  });
  return { mark, field };
}

// The line a failed run stopped at, marked until the next run.
const errorLine = lineMark("cm-error-line");

// Each profiled line's share of the run's CPU time, as a bar in a gutter of its own
// (width against the hottest line). They belong to the code that ran: an edit fades
// them, and the next run replaces them.
const setHeat = StateEffect.define();
class HeatMarker extends GutterMarker {
  constructor(heat, label) { super(); this.heat = heat; this.label = label; }
  eq(other) { return other.heat === this.heat && other.label === this.label; }
  toDOM() {
    const bar = document.createElement("span");
    bar.className = "cm-heat-marker";
    bar.style.width = Math.max(this.heat, 4) + "%";
    bar.title = this.label;
    return bar;
  }
}
const heat = StateField.define({
  create: () => ({ markers: RangeSet.empty, stale: false }),
  update(value, transaction) {
    let { markers, stale } = value;
    if (transaction.docChanged) {
      markers = markers.map(transaction.changes);
      stale = markers.size > 0;
    }
    for (const effect of transaction.effects) {
      if (!effect.is(setHeat)) continue;
      const doc = transaction.state.doc;
      markers = RangeSet.of(
        effect.value.lines
          .filter((line) => line.line >= 1 && line.line <= doc.lines)
          .sort((a, b) => a.line - b.line)
          .map((line) => new HeatMarker(line.heat, line.label).range(doc.line(line.line).from))
      );
      stale = effect.value.stale && markers.size > 0;
    }
    return { markers, stale };
  },
});
const heatGutter = gutter({
  class: "cm-heat-gutter",
  markers: (view) => view.state.field(heat).markers,
});
const heatStale = EditorView.editorAttributes.compute([heat], (state) =>
  state.field(heat).stale ? { class: "cm-heat-stale" } : {}
);
// The line a "hottest lines" link went to: heat's colour, not an error's.
const heatLine = lineMark("cm-heat-line", [setHeat]);

// Key bindings a visitor chose (static/js/settings.js): every editor starts with them
// and follows a change at once.
// Vim's status line under the editor says its mode (--NORMAL--, --INSERT--): without it
// nothing tells whether a key types or commands.
const KEYMAPS = { vim: () => vim({ status: true }), emacs: () => emacs() };
const keyBindings = (name) => (KEYMAPS[name] ? Prec.highest(KEYMAPS[name]()) : []);
const chosenKeys = () => (window.PlaygroundSettings ? window.PlaygroundSettings.read().keys : "");

// The label of the heat marker on the cursor's line ("" where there is none).
function heatAtCursor(state) {
  const { markers, stale } = state.field(heat);
  const line = state.doc.lineAt(state.selection.main.head);
  let label = "";
  markers.between(line.from, line.from, (from, to, marker) => {
    if (from === line.from) label = marker.label + (stale ? " (before your edits)" : "");
  });
  return label;
}

function create(textarea, { onRun, onChange, onHeatLine, label } = {}) {
  // On a phone, long lines wrap: the page never scrolls sideways, and the editor is no
  // scroll box that a keyboard cannot reach.
  const narrow = window.matchMedia("(max-width: 640px)");
  const wrapping = new Compartment();
  const wrap = () => (narrow.matches ? EditorView.lineWrapping : []);
  const bindings = new Compartment();
  const view = new EditorView({
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        // Ctrl/Cmd+Enter runs, whatever the bindings; then vim's or emacs' keys come
        // before every other binding.
        Prec.highest(
          keymap.of([{ key: "Mod-Enter", run: () => { onRun && onRun(); return true; } }])
        ),
        bindings.of(keyBindings(chosenKeys())),
        basicSetup,
        python(),
        indentUnit.of("    "),
        EditorState.tabSize.of(4),
        keymap.of([indentWithTab]),
        theme,
        wrapping.of(wrap()),
        syntaxHighlighting(highlight),
        errorLine.field,
        heat,
        heatGutter,
        heatStale,
        heatLine.field,
        EditorView.contentAttributes.of({
          "aria-label": label || "Python code",
          ...(textarea.getAttribute("aria-describedby")
            ? { "aria-describedby": textarea.getAttribute("aria-describedby") }
            : {}),
        }),
        EditorView.updateListener.of((update) => {
          const heatChanged = update.transactions.some((tr) => tr.effects.some((e) => e.is(setHeat)));
          if (onHeatLine && (update.selectionSet || update.docChanged || heatChanged)) {
            onHeatLine(heatAtCursor(update.state));
          }
          if (update.docChanged) {
            textarea.value = update.state.doc.toString();
            onChange && onChange(textarea.value);
          }
        }),
      ],
    }),
  });
  document.addEventListener("ccp:settings", (event) => {
    view.dispatch({ effects: bindings.reconfigure(keyBindings(event.detail.keys)) });
  });
  narrow.addEventListener("change", () => view.dispatch({ effects: wrapping.reconfigure(wrap()) }));
  textarea.insertAdjacentElement("afterend", view.dom);
  textarea.hidden = true;
  return {
    view,
    getValue: () => view.state.doc.toString(),
    setValue(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    focus: () => view.focus(),
    markLine(number) {
      view.dispatch({ effects: errorLine.mark.of(number || null) });
    },
    // [{line, heat (0-100), label}] of the run shown ([] clears), faded (`stale`)
    // where the editor's code is no longer the code that ran.
    setHeat(lines, stale = false) {
      view.dispatch({ effects: setHeat.of({ lines: lines || [], stale }) });
    },
    markHeatLine(number) {
      view.dispatch({ effects: heatLine.mark.of(number || null) });
    },
    goToLine(number) {
      if (!number || number > view.state.doc.lines) return;
      const line = view.state.doc.line(number);
      view.dispatch({ selection: EditorSelection.cursor(line.from), scrollIntoView: true });
      view.focus();
    },
  };
}

window.PlaygroundEditor = { create };
