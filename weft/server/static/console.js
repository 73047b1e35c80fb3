// The console's script: sign-in, confirmations that post to the API, forms built from Weft types, live updates.
// Everything that came from a run is set with textContent, never parsed as markup.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const body = document.body;

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  // POST `data` as JSON to the API; the answer's JSON, or an Error carrying the problem's detail.
  async function send(url, data) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("weft_csrf") },
      body: data === undefined ? undefined : JSON.stringify(data),
    });
    let answer = null;
    try {
      answer = await response.json();
    } catch (e) {
      answer = null;
    }
    if (response.status === 401 && !url.endsWith("/session")) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    }
    if (!response.ok) {
      const detail = answer && answer.detail ? answer.detail : `${response.status} ${response.statusText}`;
      const more = answer && answer.problems && answer.problems.length > 1 ? ` (${answer.problems.length} problems)` : "";
      throw new Error(detail + more);
    }
    return answer;
  }

  function when(t) {
    return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
  }

  function setBadge(holder, state) {
    const badge = holder && $(".badge", holder);
    if (!badge || !state) return;
    badge.className = "badge s-" + state.replace(/ /g, "-");
    badge.textContent = state;
  }

  function setProgress(holder, value) {
    if (!holder || value === null || value === undefined) return;
    const bar = $("progress", holder);
    if (bar) bar.value = value;
    const pct = $(".pct", holder);
    if (pct) pct.textContent = Math.round(value * 100) + "%";
  }

  // -- forms built from types (see console.FormField) ------------------------------------------

  function collect(root) {
    const out = {};
    for (const el of $$("[data-field]", root)) {
      const name = el.dataset.field;
      const kind = el.dataset.kind;
      const empty = el.dataset.empty;
      const what = name || "the value";
      let value;
      if (kind === "bool") {
        value = el.checked;
      } else if (el.value.trim() === "" && !(kind === "str" && el.value !== "")) {
        if (empty === "omit") continue;
        if (empty !== "null") throw new Error(`${what}: a value is needed`);
        value = null;
      } else if (kind === "int") {
        if (!/^-?\d+$/.test(el.value.trim())) throw new Error(`${what}: not a whole number`);
        value = Number(el.value.trim());
      } else if (kind === "float") {
        value = Number(el.value.trim());
        if (!Number.isFinite(value)) throw new Error(`${what}: not a number`);
      } else if (kind === "choice") {
        value = el.value === "true";
      } else if (kind === "json") {
        try {
          value = JSON.parse(el.value);
        } catch (e) {
          throw new Error(`${what}: not valid JSON`);
        }
      } else {
        value = el.value;
      }
      if (name === "") return value;
      out[name] = value;
    }
    return out;
  }

  function startBody() {
    const form = $("#start-form");
    const data = { flow: form.dataset.flow, inputs: collect(form) };
    for (const el of $$("[data-meta]", form)) if (el.value.trim()) data[el.dataset.meta] = el.value.trim();
    return data;
  }

  function selected() {
    return $$(".pick:checked").map((box) => box.value);
  }

  function rerunBody(form) {
    const data = { with_dependents: $("[data-dependents]", form).checked };
    const item = $("[data-item]", form);
    if (item && item.value.trim() !== "") {
      if (!/^\d+$/.test(item.value.trim()) || Number(item.value) < 1) throw new Error("item: a whole number from 1");
      data.item = Number(item.value.trim());
    }
    return data;
  }

  function bodyOf(form) {
    switch (form.dataset.body) {
      case "ids":
        return { ids: selected() };
      case "outputs":
        return { outputs: $("[data-field]", form) ? collect(form) : null };
      case "fields":
        return collect(form);
      case "rollback": {
        const force = $("[data-force]", form);
        return { force: Boolean(force && force.checked) };
      }
      case "rerun":
        return rerunBody(form);
      case "start":
        return startBody();
      default:
        return undefined;
    }
  }

  // -- confirmations ---------------------------------------------------------------------------

  function showProblem(form, text) {
    const problem = $(".problem", form);
    problem.textContent = text;
    problem.hidden = !text;
  }

  function report(form, answer) {
    const list = $(".report", form);
    list.replaceChildren();
    const line = (text) => {
      const li = document.createElement("li");
      li.textContent = text;
      list.append(li);
    };
    line(`done: ${answer.done.length}`);
    for (const r of answer.refused) line(`refused ${r.id.slice(0, 12)}: ${r.reason}`);
    for (const id of answer.missing) line(`no run ${id}`);
    list.hidden = false;
    $("button[type=submit]", form).hidden = true;
    $("[data-close]", form).textContent = "Close";
    form.closest("dialog").dataset.done = "1";
  }

  function openDialog(id) {
    const dialog = document.getElementById(id);
    const form = $("form", dialog);
    showProblem(form, "");
    for (const n of $$("[data-selected-count]", dialog)) n.textContent = String(selected().length);
    const preview = $("[data-preview]", dialog);
    if (preview) {
      try {
        preview.textContent = JSON.stringify(startBody(), null, 2);
      } catch (e) {
        preview.textContent = "";
        showProblem(form, e.message);
      }
    }
    dialog.showModal();
  }

  async function confirmed(form) {
    const button = $("button[type=submit]", form);
    showProblem(form, "");
    button.disabled = true;
    try {
      const answer = await send(form.dataset.url, bodyOf(form));
      if (form.dataset.after === "run") location.href = "/runs/" + encodeURIComponent(answer.id);
      else if (form.dataset.after === "report") report(form, answer);
      else location.reload();
    } catch (e) {
      showProblem(form, e.message);
    } finally {
      button.disabled = false;
    }
  }

  for (const opener of $$("[data-open]")) opener.addEventListener("click", () => openDialog(opener.dataset.open));
  for (const dialog of $$("dialog.confirm")) {
    const form = $("form", dialog);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      confirmed(form);
    });
    $("[data-close]", form).addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      if (dialog.dataset.done) location.reload();
    });
  }

  // -- sign in and out -------------------------------------------------------------------------

  const login = $("#login");
  if (login) {
    login.addEventListener("submit", async (e) => {
      e.preventDefault();
      showProblem(login, "");
      try {
        await send("/api/v1/session", { token: $("#token").value.trim() });
        location.href = login.dataset.next || "/";
      } catch (err) {
        showProblem(login, err.message);
      }
    });
  }
  const signOut = $("#sign-out");
  if (signOut) {
    signOut.addEventListener("click", async () => {
      await send("/api/v1/session/end");
      location.href = "/login";
    });
  }

  // -- live updates ----------------------------------------------------------------------------

  function later(fn, ms) {
    let timer = null;
    return () => {
      if (timer === null) timer = setTimeout(() => ((timer = null), fn()), ms);
    };
  }

  function runsPage() {
    const picks = $$(".pick");
    const all = $("#select-all");
    const update = () => {
      const n = selected().length;
      for (const c of $$("[data-selected-count]")) c.textContent = String(n);
      for (const b of $$("[data-needs-selection]")) b.disabled = n === 0;
    };
    for (const p of picks) p.addEventListener("change", update);
    if (all) {
      all.addEventListener("change", () => {
        for (const p of picks) p.checked = all.checked;
        update();
      });
    }
    followRuns((d, shown) => {
      if (!shown && body.dataset.offset === "0" && d.run_state) {
        const link = $("#new-runs");
        link.href = location.pathname + location.search;
        link.hidden = false;
      }
    });
  }

  // Every run's events: the rows of the runs shown follow their state and progress; then `then(event, shown)`.
  function followRuns(then) {
    const events = new EventSource("/api/v1/events");
    events.onmessage = (e) => {
      const d = JSON.parse(e.data);
      const row = $(`tr[data-run="${CSS.escape(d.run)}"]`);
      if (row) {
        setBadge($("[data-state]", row), d.run_state);
        setProgress($("[data-progress]", row), d.progress);
      }
      then(d, row !== null);
    };
  }

  function dashboardPage() {
    const refresh = later(async () => {
      const response = await fetch("/api/v1/counts", { credentials: "same-origin" });
      if (!response.ok) return;
      const counts = await response.json();
      for (const [window, byState] of Object.entries(counts.windows)) {
        for (const [state, n] of Object.entries(byState)) {
          const cell = $(`[data-count="${CSS.escape(window + "." + state)}"]`);
          if (cell) cell.textContent = String(n);
        }
      }
    }, 500);
    followRuns(refresh);
  }

  function runPage() {
    const rid = body.dataset.run;
    const img = $("#diagram");
    const history = $("#history");
    let seen = 0;
    let latest = body.dataset.state;
    const redraw = later(() => {
      const state = latest;
      img.addEventListener("load", () => (img.dataset.state = state), { once: true });
      img.src = img.dataset.src + "?v=" + Date.now();
    }, 250);
    const events = new EventSource(`/api/v1/runs/${encodeURIComponent(rid)}/stream?after=${body.dataset.seq}`);
    events.onopen = () => ($("#live").hidden = false);
    events.onmessage = (e) => {
      const d = JSON.parse(e.data);
      seen += 1;
      if (d.run_state) {
        latest = d.run_state;
        setBadge($("#run-state"), d.run_state);
      }
      setProgress($("#run-progress"), d.progress);
      if (d.step && d.state) {
        const row = $(`tr[data-step="${CSS.escape(d.step)}"]`);
        if (row) setBadge($("[data-step-state]", row), d.state);
        // A wait step now waits: load the page again, which offers its signal's form.
        if (row && row.dataset.kind === "wait" && d.state === "suspended") location.reload();
      }
      const tr = document.createElement("tr");
      for (const text of [d.seq, when(d.t), d.step || "", d.state || "", d.detail || d.log || d.note || ""]) {
        const td = document.createElement("td");
        td.textContent = text === null || text === undefined ? "" : String(text);
        tr.append(td);
      }
      history.append(tr);
      redraw();
    };
    events.addEventListener("end", (e) => {
      events.close();
      $("#live").hidden = true;
      const d = JSON.parse(e.data);
      // The run stopped: load the page again for what only a full read shows (errors, outputs, actions).
      if (seen > 0 || d.run_state !== body.dataset.state) {
        location.reload();
        return;
      }
      // Stopped already when the page was drawn: wait for someone (a CLI, another console) to steer it.
      const all = new EventSource("/api/v1/events");
      all.onmessage = (m) => {
        if (JSON.parse(m.data).run === rid) location.reload();
      };
    });
  }

  const pages = { runs: runsPage, dashboard: dashboardPage, run: runPage };
  if (pages[body.dataset.page]) pages[body.dataset.page]();
})();
