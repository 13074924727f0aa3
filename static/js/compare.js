// The comparison page: two editors, kept in this browser, Ctrl/Cmd+Enter compares.
(function () {
  "use strict";
  const form = document.getElementById("compare-form");
  if (!form) return;
  const submit = () => form.requestSubmit();
  // Code the server sent (a refusal to fix, or "Edit and compare again") wins over
  // what this browser kept; the kept code stays stored until the user edits.
  const fromServer = form.hasAttribute("data-code-from-server");
  for (const side of ["a", "b"]) {
    const textarea = document.getElementById("code_" + side);
    const key = "ccp:compare:" + side;
    let saved = null;
    try { saved = localStorage.getItem(key); } catch (e) { /* private mode */ }
    if (saved !== null && !fromServer) textarea.value = saved;
    const remember = (text) => { try { localStorage.setItem(key, text); } catch (e) { /* ignore */ } };
    if (window.PlaygroundEditor) {
      window.PlaygroundEditor.create(textarea, { onRun: submit, onChange: remember, label: "Snippet " + side.toUpperCase() });
    } else {
      textarea.addEventListener("input", () => remember(textarea.value));
    }
  }
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
  });
})();
