// CodeMirror 6 for the playground, bundled by ./build.sh into static/js/editor.bundle.js.
// It enhances a <textarea>: the form keeps working without JavaScript.
import { basicSetup } from "codemirror";
import { Decoration, EditorView, keymap } from "@codemirror/view";
import { Compartment, EditorSelection, EditorState, Prec, StateEffect, StateField } from "@codemirror/state";
import { HighlightStyle, indentUnit, syntaxHighlighting } from "@codemirror/language";
import { indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { tags as t } from "@lezer/highlight";

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
});

// The line a failed run stopped at, marked until the next run.
const markLine = StateEffect.define();
const errorLine = StateField.define({
  create: () => Decoration.none,
  update(marks, transaction) {
    marks = marks.map(transaction.changes);
    for (const effect of transaction.effects) {
      if (!effect.is(markLine)) continue;
      const number = effect.value;
      marks = number && number <= transaction.state.doc.lines
        ? Decoration.set([Decoration.line({ class: "cm-error-line" }).range(transaction.state.doc.line(number).from)])
        : Decoration.none;
    }
    return marks;
  },
  provide: (field) => EditorView.decorations.from(field),
});

function create(textarea, { onRun, onChange, label } = {}) {
  // On a phone, long lines wrap: the page never scrolls sideways, and the editor is no
  // scroll box that a keyboard cannot reach.
  const narrow = window.matchMedia("(max-width: 640px)");
  const wrapping = new Compartment();
  const wrap = () => (narrow.matches ? EditorView.lineWrapping : []);
  const view = new EditorView({
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        basicSetup,
        python(),
        indentUnit.of("    "),
        EditorState.tabSize.of(4),
        keymap.of([indentWithTab]),
        Prec.highest(
          keymap.of([{ key: "Mod-Enter", run: () => { onRun && onRun(); return true; } }])
        ),
        theme,
        wrapping.of(wrap()),
        syntaxHighlighting(highlight),
        errorLine,
        EditorView.contentAttributes.of({
          "aria-label": label || "Python code",
          ...(textarea.getAttribute("aria-describedby")
            ? { "aria-describedby": textarea.getAttribute("aria-describedby") }
            : {}),
        }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) {
            textarea.value = update.state.doc.toString();
            onChange && onChange(textarea.value);
          }
        }),
      ],
    }),
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
      view.dispatch({ effects: markLine.of(number || null) });
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
