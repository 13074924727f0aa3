// Escape presses Stop wherever a run, repeat or comparison of this browser is in flight
// (the page then shows its Stop button): on the playground, a run's page or a series'.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  // In Vim's bindings Escape is Vim's, in the editor: Stop stays a button there.
  const keys = window.PlaygroundSettings ? window.PlaygroundSettings.read().keys : "";
  if (keys === "vim" && event.target.closest && event.target.closest(".cm-editor")) return;
  const stop = document.querySelector("[data-stop]");
  if (!stop) return;
  event.preventDefault();
  // A poll may have swapped the button in a moment ago, before htmx took charge of its
  // form: unprocessed, the click would post it natively and reload the page.
  if (window.htmx) htmx.process(stop.form);
  stop.click();
});
