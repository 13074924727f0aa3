// The comparison page: two to four editors, Ctrl/Cmd+Enter compares. A and B are kept
// in this browser; C and D are not, so that a later visit never compares more
// variants than the page shows.
(function () {
  "use strict";
  const form = document.getElementById("compare-form");
  if (!form) return;
  const submit = () => form.requestSubmit();
  // Code the server sent (a refusal to fix, or "Edit and compare again") wins over
  // what this browser kept; the kept code stays stored until the user edits.
  const fromServer = form.hasAttribute("data-code-from-server");
  const editor = (textarea, label, remember) => {
    if (window.PlaygroundEditor) {
      window.PlaygroundEditor.create(textarea, { onRun: submit, onChange: remember, label: label });
    } else if (remember) {
      textarea.addEventListener("input", () => remember(textarea.value));
    }
  };
  for (const side of ["a", "b"]) {
    const textarea = document.getElementById("code_" + side);
    const key = "ccp:compare:" + side;
    let saved = null;
    try { saved = localStorage.getItem(key); } catch (e) { /* private mode */ }
    if (saved !== null && !fromServer) textarea.value = saved;
    const remember = (text) => { try { localStorage.setItem(key, text); } catch (e) { /* ignore */ } };
    editor(textarea, "Snippet " + side.toUpperCase(), remember);
  }
  // C and D: an editor once their box is open (an editor measures itself when shown).
  const more = document.getElementById("more-variants");
  let opened = false;
  const openMore = () => {
    if (opened || !more.open) return;
    opened = true;
    for (const textarea of more.querySelectorAll("textarea[data-optional]")) {
      editor(textarea, "Snippet " + textarea.id.slice(-1).toUpperCase(), null);
    }
  };
  if (more) { more.addEventListener("toggle", openMore); openMore(); }
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
  });
})();
