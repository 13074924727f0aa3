// Share's Copy buttons (templates/runs/_share.html): the text of the field a button
// names goes to the clipboard, and the panel says so; where the browser refuses, the
// text is left selected for Ctrl+C.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const status = button.closest("[data-share]")?.querySelector("[data-copy-status]");
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
    if (status) status.textContent = button.dataset.copiedText;
  } catch {
    if (status) status.textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy.";
  }
});
