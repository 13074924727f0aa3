// Live pages poll (hx-trigger="every …" with data-poll); a hidden tab does not. Done
// here rather than with an htmx trigger filter, which is evaluated code and is refused
// by the Content-Security-Policy.
document.addEventListener("htmx:beforeRequest", (event) => {
  if (document.visibilityState !== "visible" && event.detail.elt.hasAttribute("data-poll")) {
    event.preventDefault();
  }
});
