// A visitor's settings: theme, editor font size and key bindings, kept in this browser.
// Loaded in <head>, not deferred, so that the theme applies before the first paint; the
// header's settings menu is wired once the page is parsed. Editors follow a change at
// once (the "ccp:settings" event, static/js/playground.js and compare.js).
(function () {
  "use strict";
  const KEY = "ccp:settings";
  const CHOICES = {
    theme: ["auto", "light", "dark"],
    fontSize: ["", "12", "14", "16", "18", "20"],
    keys: ["standard", "vim", "emacs"],
  };

  function read() {
    let saved = {};
    try { saved = JSON.parse(localStorage.getItem(KEY) || "{}") || {}; } catch (e) { /* none */ }
    const settings = {};
    for (const [name, allowed] of Object.entries(CHOICES)) {
      settings[name] = allowed.includes(saved[name]) ? saved[name] : allowed[0];
    }
    return settings;
  }
  function apply(settings) {
    const root = document.documentElement;
    if (settings.theme === "auto") delete root.dataset.theme;
    else root.dataset.theme = settings.theme;
    if (settings.fontSize) root.style.setProperty("--editor-font-size", settings.fontSize + "px");
    else root.style.removeProperty("--editor-font-size");
  }
  function save(settings) {
    try { localStorage.setItem(KEY, JSON.stringify(settings)); } catch (e) { /* private mode */ }
    apply(settings);
    document.dispatchEvent(new CustomEvent("ccp:settings", { detail: settings }));
  }

  apply(read());
  window.PlaygroundSettings = { read };

  document.addEventListener("DOMContentLoaded", () => {
    const menu = document.querySelector("[data-settings]");
    const form = menu && menu.querySelector("form");
    if (!form) return;
    const settings = read();
    for (const [name, value] of Object.entries(settings)) {
      const field = form.elements[name];
      if (field) field.value = value;
    }
    form.addEventListener("change", () => {
      const chosen = read();
      for (const name of Object.keys(CHOICES)) {
        if (form.elements[name]) chosen[name] = form.elements[name].value;
      }
      save(chosen);
    });
    form.addEventListener("submit", (event) => event.preventDefault());
    // Escape or a click elsewhere closes the menu.
    document.addEventListener("click", (event) => {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
    menu.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && menu.open) {
        event.preventDefault();
        menu.open = false;
        menu.querySelector("summary").focus();
      }
    });
    menu.hidden = false; // a menu that works only with JavaScript shows only with it
  });
})();
