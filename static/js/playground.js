// The playground and a run's page: editor, examples, Ctrl/Cmd+Enter, code kept across
// reloads, the failing line marked, and a run's start and end announced.
(function () {
  "use strict";
  const CODE = "ccp:code"; // the visitor's latest editor text
  const ORIGIN = "ccp:code:origin"; // the run whose page that text was edited on
  const PREVIOUS = "ccp:code:previous"; // text a loaded run replaced, to restore
  const form = document.getElementById("run-form");
  const textarea = document.getElementById("code");
  if (!form || !textarea) return;

  const store = {
    get(key) { try { return localStorage.getItem(key); } catch (e) { return null; } },
    set(key, value) { try { localStorage.setItem(key, value); } catch (e) { /* private mode */ } },
  };
  const examples = JSON.parse(document.getElementById("examples-data").textContent);
  const select = document.getElementById("example");
  const notice = document.getElementById("code-notice");
  const result = document.getElementById("result");
  let currentRun = form.dataset.run || "";
  let editor = null;

  function remember(text) {
    store.set(CODE, text);
    store.set(ORIGIN, currentRun);
  }
  function setCode(text) {
    if (editor) editor.setValue(text);
    else textarea.value = text;
  }
  function showNotice(message, label, action) {
    notice.textContent = message + " ";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link-button";
    button.textContent = label;
    button.addEventListener("click", () => { action(); notice.hidden = true; });
    notice.append(button);
    notice.hidden = false;
  }

  // Which code the editor opens with. A run's page (or ?from=) brings its code; the
  // visitor's own unsaved text is never lost to it: edits made on this very run's page
  // come back after a reload, and other text stays one click away.
  const serverCode = textarea.value;
  const saved = store.get(CODE);
  const source = currentRun || new URLSearchParams(location.search).get("from") || "";
  if (serverCode.trim() === "") {
    textarea.value = saved !== null ? saved : examples[0].code;
  } else if (saved !== null && saved.trim() !== "" && saved !== serverCode) {
    if (source && store.get(ORIGIN) === source) {
      textarea.value = saved;
      showNotice("Your edits to this run's code are back.", "Show the run's code instead", () => setCode(serverCode));
    } else {
      store.set(PREVIOUS, saved);
      showNotice("This run's code replaced the code you had in the editor.", "Bring your code back", () => setCode(store.get(PREVIOUS) || ""));
    }
  }

  const submit = () => { if (!inFlight()) form.requestSubmit(); };  // one run at a time
  if (window.PlaygroundEditor) {
    editor = window.PlaygroundEditor.create(textarea, { onRun: submit, onChange: remember });
  } else {
    textarea.addEventListener("input", () => remember(textarea.value));
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
    });
  }
  if (serverCode.trim() === "") remember(textarea.value);
  if (editor && textarea.dataset.errorLine) editor.markLine(Number(textarea.dataset.errorLine));

  select.addEventListener("change", () => {
    const example = examples.find((e) => e.slug === select.value);
    if (!example) return;
    setCode(example.code);
    if (editor) editor.focus(); else remember(example.code);
  });

  // "Run ×N" says how many runs it starts.
  const repetitions = document.getElementById("repetitions");
  const times = document.querySelector("[data-repetitions]");
  repetitions.addEventListener("input", () => { times.textContent = repetitions.value || "?"; });

  // Keep the editor's text in the form field htmx serialises.
  form.addEventListener("htmx:configRequest", (event) => {
    if (editor) event.detail.parameters.code = editor.getValue();
  });
  form.addEventListener("htmx:beforeRequest", () => { if (editor) editor.markLine(null); });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !form.contains(event.target)) {
      event.preventDefault(); submit();
    }
  });

  // A traceback's line numbers and "Show line N" move the editor there.
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.line-link");
    if (!link || !editor) return;
    event.preventDefault();
    editor.markLine(Number(link.dataset.line));
    editor.goToLine(Number(link.dataset.line));
  });

  // Screen readers hear a run start and end once each, not every poll.
  const announcer = document.getElementById("run-announcer");
  let announced = "";
  document.body.addEventListener("htmx:afterSettle", () => {
    const run = result.querySelector(".run[data-status], .series[data-finished]");
    if (!run) return;
    const over = run.classList.contains("series")
      ? run.dataset.finished === "true"
      : !["queued", "running"].includes(run.dataset.status);
    const badge = run.querySelector(".badge");
    const key = (run.dataset.run || run.id) + (over ? ":over" : ":started");
    if (key === announced) return;
    announced = key;
    announcer.textContent = over ? "Finished: " + badge.textContent.trim() + "." : "Run started.";
    if (run.dataset.run && over) {
      currentRun = run.dataset.run;
      const line = run.querySelector("a.line-link[data-line]");
      // The failing line, or the line a timeout or a limit stopped the snippet on.
      const stopped = ["failed", "timed_out", "limit_exceeded"].includes(run.dataset.status);
      if (editor && line && stopped) editor.markLine(Number(line.dataset.line));
    }
  });

  // A new result starts in view: beside the editor on wide screens, below it otherwise.
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target !== result || event.detail.xhr.status >= 400) return;
    currentRun = (result.querySelector(".run[data-run]") || {}).dataset?.run || "";
    store.set(ORIGIN, currentRun);
    if (result.getBoundingClientRect().top > window.innerHeight * 0.6) {
      result.scrollIntoView({ block: "start" });
    }
  });

  // The help line says what the chosen environment has.
  const envSelect = document.getElementById("env");
  const envHelp = document.querySelector("[data-env-help]");
  if (envSelect && envHelp) {
    envSelect.addEventListener("change", () => {
      envHelp.textContent = envSelect.selectedOptions[0]?.dataset.summary || "";
    });
  }

  // While a run of this browser is queued or running (its page offers Stop): the Run
  // buttons wait, and Stop (or Escape) ends it.
  const runButtons = [document.getElementById("run-button"), document.getElementById("repeat-button")];
  function inFlight() {
    return Boolean(document.querySelector("#result [data-stop]"));
  }
  function syncRunButtons() {
    const busy = inFlight();
    runButtons.forEach((button) => { if (button) button.disabled = busy; });
  }
  document.body.addEventListener("htmx:afterSettle", syncRunButtons);
  syncRunButtons();
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.defaultPrevented) return;
    const stop = document.querySelector("#result [data-stop]");
    if (stop) {
      event.preventDefault();
      stop.click();
    }
  });

  // A grid just chosen: say that new runs use it, and price the shown run at it.
  const grid = document.getElementById("grid");
  if (grid && window.htmx) {
    grid.addEventListener("change", () => {
      const query = new URLSearchParams({ grid: grid.value, run: currentRun });
      htmx.ajax("GET", `${form.dataset.gridNote}?${query}`, { target: "#grid-note", swap: "outerHTML" });
    });
  }
})();
