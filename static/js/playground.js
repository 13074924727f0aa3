// The playground and a run's page: editor, examples, Ctrl/Cmd+Enter, drafts kept across
// reloads, the failing line marked, each line's heat in the gutter, and a run's start
// and end announced.
(function () {
  "use strict";
  const PLAYGROUND = "ccp:code"; // the playground's draft
  const ORIGIN = "ccp:code:origin"; // the latest run made from that draft
  const RUN_DRAFTS = "ccp:drafts"; // edits begun on a run's page, by run: {id: text}
  const MAX_RUN_DRAFTS = 10; // the oldest go first
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

  const runDrafts = {
    all() {
      try { return JSON.parse(store.get(RUN_DRAFTS) || "{}") || {}; } catch (e) { return {}; }
    },
    get(run) { return this.all()[run] ?? null; },
    set(run, text) {
      const all = this.all();
      delete all[run]; // re-added last: the newest
      all[run] = text;
      const runs = Object.keys(all);
      runs.slice(0, Math.max(0, runs.length - MAX_RUN_DRAFTS)).forEach((old) => delete all[old]);
      store.set(RUN_DRAFTS, JSON.stringify(all));
    },
  };

  // Whose draft this page's edits are: the playground's ("") or a run's. A page
  // reached by running from the playground (or reloaded since) goes on with the
  // playground's draft; a run's page opened otherwise keeps its edits apart, so that
  // editing there never overwrites the playground's draft.
  const source = currentRun || new URLSearchParams(location.search).get("from") || "";
  let draftOf = !source || store.get(ORIGIN) === source ? "" : source;

  function remember(text) {
    if (draftOf) runDrafts.set(draftOf, text);
    else store.set(PLAYGROUND, text);
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

  // A link with the code in it (Share's, runs.pages.code_fragment): #code=, env= and
  // stdin=, each UTF-8 in base64url. Read here, never sent: nothing is stored until Run.
  function fromLink() {
    const fields = new URLSearchParams(location.hash.slice(1));
    if (!fields.has("code")) return null;
    const decoded = {};
    try {
      for (const [name, value] of fields) {
        const bytes = Uint8Array.from(atob(value.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
        if (name === "code" && bytes.length > Number(textarea.dataset.maxBytes)) return null;
        decoded[name] = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      }
    } catch (e) { return null; } // not a link of ours: the draft as usual
    return decoded;
  }

  // Which code the editor opens with: a link's; else the playground's draft on the
  // playground; on a run's page (or ?from=) the run's code, or the edits made to it here
  // before.
  const serverCode = textarea.value;
  const saved = draftOf ? runDrafts.get(draftOf) : store.get(PLAYGROUND);
  function openLinked(linked, draft) {
    setCode(linked.code);
    const env = document.getElementById("env");
    if (linked.env && [...env.options].some((o) => o.value === linked.env)) {
      env.value = linked.env;
      env.dispatchEvent(new Event("change"));
    }
    if (linked.stdin) {
      document.getElementById("stdin").value = linked.stdin;
      document.querySelector("[data-stdin-box]").open = true;
    }
    history.replaceState(null, "", location.pathname + location.search); // a reload keeps the edits
    if (draft !== null && draft.trim() !== "" && draft !== linked.code) {
      showNotice("Opened with the code from the link.", "Bring back your draft", () => setCode(draft));
    }
  }
  const linked = !source ? fromLink() : null;
  if (linked) {
    openLinked(linked, saved);
  } else if (serverCode.trim() === "") {
    textarea.value = saved !== null ? saved : examples[0].code;
  } else if (source && saved !== null && saved.trim() !== "" && saved !== serverCode) {
    textarea.value = saved;
    showNotice("Your edits to this run's code are back.", "Show the run's code instead", () => setCode(serverCode));
  }

  const submit = () => { if (!inFlight()) form.requestSubmit(); };  // one run at a time

  // Format (ruff's formatter) and the checks as one types (ruff's, for what would fail
  // when the code runs: syntax errors, undefined names), both on the server
  // (runs.snippets.tidy). What they find is shown and its first line marked; neither
  // stands in the way of Run.
  const diagnostics = document.getElementById("diagnostics");
  const formatButton = document.getElementById("format-button");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  const currentCode = () => (editor ? editor.getValue() : textarea.value);
  async function ask(url, code) {
    try {
      const answer = await fetch(url, {
        method: "POST", headers: { "X-CSRFToken": csrf }, body: new URLSearchParams({ code }),
      });
      return await answer.json();
    } catch (e) { return { error: "The server did not answer." }; }
  }
  function showFound(found) {
    diagnostics.replaceChildren(...found.slice(0, 3).map((d) => {
      const item = document.createElement("p");
      item.textContent = d.line ? `Line ${d.line}: ${d.message}` : d.message;
      return item;
    }));
    diagnostics.hidden = found.length === 0;
    if (editor) editor.markLine(found.length ? found[0].line : null);
  }
  let checks = 0; // the latest check's number: an older answer is dropped
  let checkTimer = null;
  function checkSoon() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(async () => {
      const number = ++checks;
      const answer = await ask(diagnostics.dataset.url, currentCode());
      if (number === checks && answer.diagnostics) showFound(answer.diagnostics);
    }, 600);
  }
  formatButton.addEventListener("click", async () => {
    const answer = await ask(formatButton.dataset.url, currentCode());
    if (answer.code === undefined) {
      showFound([{ line: answer.line, message: answer.error }]);
      return;
    }
    if (answer.code !== currentCode()) setCode(answer.code); // one step of undo
    showFound([]);
    if (editor) editor.focus();
  });
  if (window.PlaygroundEditor) {
    // The cursor's line's share, for keyboards and screen readers (the gutter is a picture).
    const heatStatus = document.getElementById("heat-status");
    const onHeatLine = (label) => { heatStatus.textContent = label; heatStatus.hidden = !label; };
    editor = window.PlaygroundEditor.create(textarea, {
      onRun: submit, onChange: (text) => { remember(text); checkSoon(); }, onHeatLine,
    });
  } else {
    textarea.addEventListener("input", () => { remember(textarea.value); checkSoon(); });
  }
  if (serverCode.trim() === "") remember(textarea.value); // a link's code: the draft now
  // A link followed from this very page changes only the fragment: no new page.
  if (!source) {
    window.addEventListener("hashchange", () => {
      const followed = fromLink();
      if (followed) openLinked(followed, editor ? editor.getValue() : textarea.value);
    });
  }
  if (editor && textarea.dataset.errorLine) editor.markLine(Number(textarea.dataset.errorLine));

  // The picker names the starter the editor holds, if it holds one as it was.
  const held = () => examples.find((e) => e.code === (editor ? editor.getValue() : textarea.value));
  select.value = held()?.slug || "";
  select.addEventListener("change", () => {
    const chosen = select.selectedOptions[0];
    if (chosen?.dataset.href) { location.href = chosen.dataset.href; return; }
    const example = examples.find((e) => e.slug === select.value);
    if (!example) return;
    // A draft of one's own is one click from coming back.
    const draft = editor ? editor.getValue() : textarea.value;
    setCode(example.code);
    if (draft.trim() && !examples.some((e) => e.code === draft)) {
      showNotice(`Your code was replaced by the starter “${example.title}”.`, "Undo", () => {
        setCode(draft);
        select.value = "";
      });
    }
    if (editor) editor.focus(); else remember(example.code);
  });

  // "Run ×N" says how many runs it starts.
  const repetitions = document.getElementById("repetitions");
  const times = document.querySelector("[data-repetitions]");
  repetitions.addEventListener("input", () => { times.textContent = repetitions.value || "?"; });

  // Keep the editor's text in the form field htmx serialises.
  let sentCode = serverCode; // the code of the run shown, for its heat
  form.addEventListener("htmx:configRequest", (event) => {
    if (editor) event.detail.parameters.code = editor.getValue();
    sentCode = event.detail.parameters.code;
  });
  form.addEventListener("htmx:beforeRequest", () => { if (editor) editor.markLine(null); });
  // Ctrl/Cmd+Enter anywhere on the page runs (the editor's own keymap runs in it).
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.target.closest(".cm-editor")) {
      event.preventDefault(); submit();
    }
  });

  // A traceback's line numbers and "Show line N" move the editor there, marked as the
  // error; a hottest line's link, marked in heat's colour.
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.line-link");
    if (!link || !editor) return;
    event.preventDefault();
    const number = Number(link.dataset.line);
    if (link.hasAttribute("data-heat")) editor.markHeatLine(number);
    else editor.markLine(number);
    editor.goToLine(number);
  });

  // Each profiled line's share, in the editor's gutter, for the run shown; faded at
  // once where the editor's code is no longer the code that ran.
  function showHeat() {
    if (!editor) return;
    const data = result.querySelector("[data-heat-lines] script");
    const lines = data ? JSON.parse(data.textContent) : [];
    editor.setHeat(lines, editor.getValue() !== sentCode);
  }
  showHeat();

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
      showHeat();
      const line = run.querySelector("a.line-link[data-line]");
      // The failing line, or the line a timeout or a limit stopped the snippet on.
      const stopped = ["failed", "timed_out", "limit_exceeded"].includes(run.dataset.status);
      if (editor && line && stopped) editor.markLine(Number(line.dataset.line));
    }
  });

  // A new result, or the refusal in its place, starts in view: beside the editor on
  // wide screens, below it otherwise.
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target !== result) return;
    if (event.detail.xhr.status < 400) {
      const shown = (result.querySelector(".run[data-run]") || {}).dataset?.run || "";
      if (shown && shown !== currentRun) {
        // A run made here: the draft follows it (the URL is now the run's).
        if (draftOf) {
          runDrafts.set(shown, editor ? editor.getValue() : textarea.value);
          draftOf = shown;
        } else {
          store.set(ORIGIN, shown);
        }
      }
      currentRun = shown;
    }
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
  // buttons wait, and Stop (or Escape: stop.js) ends it.
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

  // A grid just chosen: say that new runs use it, and price the shown run at it.
  const grid = document.getElementById("grid");
  function noteGrid(zone = "") {
    const query = new URLSearchParams({ grid: grid.value, run: currentRun, zone });
    htmx.ajax("GET", `${form.dataset.gridNote}?${query}`, { target: "#grid-note", swap: "outerHTML" });
  }
  if (grid && window.htmx) {
    grid.addEventListener("change", () => noteGrid());
  }
  // Nobody chose a grid yet: propose the one of the browser's time zone, and say so
  // (where the zone names no country with data, the server's default stays, unsaid).
  if (grid && window.htmx && form.dataset.gridZone && !source) {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    const before = grid.value;
    fetch(`${form.dataset.gridZone}?${new URLSearchParams({ tz: zone })}`)
      .then((answer) => answer.json())
      .then((proposed) => {
        // Chosen meanwhile by the visitor: theirs stands.
        if (!proposed.grid || proposed.grid === grid.value || grid.value !== before) return;
        grid.value = proposed.grid;
        noteGrid(zone);
      })
      .catch(() => { /* the default stays */ });
  }
})();
