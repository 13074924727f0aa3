// The playground page: editor, examples, Ctrl/Cmd+Enter, and code kept across reloads.
(function () {
  "use strict";
  const STORAGE_KEY = "ccp:code";
  const form = document.getElementById("run-form");
  const textarea = document.getElementById("code");
  if (!form || !textarea) return;

  const examples = JSON.parse(document.getElementById("examples-data").textContent);
  const select = document.getElementById("example");
  const fromServer = textarea.value.trim() !== "";

  function remember(text) {
    try { localStorage.setItem(STORAGE_KEY, text); } catch (e) { /* private mode: nothing kept */ }
  }

  if (!fromServer) {
    let saved = null;
    try { saved = localStorage.getItem(STORAGE_KEY); } catch (e) { /* ignore */ }
    textarea.value = saved !== null ? saved : examples[0].code;
  }

  const submit = () => form.requestSubmit();
  let editor = null;
  if (window.PlaygroundEditor) {
    editor = window.PlaygroundEditor.create(textarea, { onRun: submit, onChange: remember });
  } else {
    textarea.addEventListener("input", () => remember(textarea.value));
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
    });
  }
  remember(textarea.value);

  select.addEventListener("change", () => {
    const example = examples.find((e) => e.slug === select.value);
    if (!example) return;
    if (editor) { editor.setValue(example.code); editor.focus(); }
    else { textarea.value = example.code; remember(example.code); }
  });

  // Keep the editor's text in the form field htmx serialises.
  form.addEventListener("htmx:configRequest", (event) => {
    if (editor) event.detail.parameters.code = editor.getValue();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !form.contains(event.target)) {
      event.preventDefault(); submit();
    }
  });
})();
