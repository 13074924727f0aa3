// CodeMirror 6 for the playground, bundled by ./build.sh into static/js/editor.bundle.js.
// It enhances a <textarea>: the form keeps working without JavaScript.
import { basicSetup } from "codemirror";
import { EditorView, keymap } from "@codemirror/view";
import { EditorState, Compartment, Prec } from "@codemirror/state";
import { indentUnit } from "@codemirror/language";
import { indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { oneDark } from "@codemirror/theme-one-dark";

function create(textarea, { onRun, onChange, label } = {}) {
  const theme = new Compartment();
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
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
        theme.of(dark.matches ? oneDark : []),
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
  dark.addEventListener("change", (event) => {
    view.dispatch({ effects: theme.reconfigure(event.matches ? oneDark : []) });
  });
  textarea.insertAdjacentElement("afterend", view.dom);
  textarea.hidden = true;
  return {
    view,
    getValue: () => view.state.doc.toString(),
    setValue(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    focus: () => view.focus(),
  };
}

window.PlaygroundEditor = { create };
