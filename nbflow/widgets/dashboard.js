// The browser side of nbflow's Dashboard: an anywidget front-end module (no build step).
//
// The kernel draws everything (header, graph, task table, timeline) as HTML strings in the
// model's traits (_header, _dag, _table, _gantt); this module only places them, switches tabs and lanes in the page, and
// tells the kernel which tab is open: a big run's hidden tabs are drawn when first opened.
// One model per dashboard: in a kernel, every widget model costs a message of its own.

const PANES = [
  ["dag", "Graph"],
  ["table", "Tasks"],
  ["gantt", "Timeline"],
];
const WAITING = '<div class="nbflow-waiting">Drawing…</div>';
let views = 0; // element ids of this page must be unique across dashboards

function element(tag, className, attributes = {}) {
  const node = document.createElement(tag);
  node.className = className;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// Which <details> this is: its kind (log, traceback) and its task's row.
const detailsKey = (d) => `${d.className}:${d.closest("[data-row-task]")?.dataset.rowTask}`;

// Replace a pane's HTML, keeping what the reader did to the old one: opened tracebacks and
// logs (by task), the scroll position of each scrollable frame, and each open log's
// (a log scrolled to its end stays at its end as lines come, like `tail -f`).
function replace(target, html) {
  // What the reader sees open or closed stays so (details that are new come as drawn).
  const opened = new Map(
    [...target.querySelectorAll("details")].map((d) => [detailsKey(d), d.open]),
  );
  const scrolls = [...target.querySelectorAll(".nbflow-frame")].map((f) => [
    f.scrollLeft,
    f.scrollTop,
  ]);
  const logs = new Map(
    [...target.querySelectorAll(".nbflow-log-lines")].map((p) => [
      detailsKey(p.closest("details")),
      p.scrollTop + p.clientHeight >= p.scrollHeight - 4 ? Infinity : p.scrollTop,
    ]),
  );
  target.innerHTML = html || WAITING;
  for (const d of target.querySelectorAll("details")) {
    const open = opened.get(detailsKey(d));
    if (open !== undefined) d.open = open;
  }
  target.querySelectorAll(".nbflow-frame").forEach((f, i) => {
    if (i < scrolls.length) [f.scrollLeft, f.scrollTop] = scrolls[i];
  });
  for (const p of target.querySelectorAll(".nbflow-log-lines")) {
    const at = logs.get(detailsKey(p.closest("details")));
    p.scrollTop = at === undefined || at === Infinity ? p.scrollHeight : at;
  }
}

// The Tasks view: a log is drawn by the kernel only while it is open, so opening or
// closing one tells the kernel (the `expanded` trait); a click on a task's row opens or
// closes the details under it (its log, else its traceback).
function watchTasks(pane, model) {
  pane.addEventListener(
    "toggle",
    () => {
      const open = [...pane.querySelectorAll("details.nbflow-log[open]")].map(
        (d) => d.dataset.task,
      );
      const now = model.get("expanded") || [];
      if (open.length !== now.length || open.some((t) => !now.includes(t))) {
        model.set("expanded", open);
        model.save_changes();
      }
    },
    true, // toggle does not bubble: listen as it goes down
  );
  // Logs opened from Python (`dashboard.expanded = [...]`).
  const follow = () => {
    const wanted = model.get("expanded") || [];
    for (const d of pane.querySelectorAll("details.nbflow-log")) {
      d.open = wanted.includes(d.dataset.task);
    }
  };
  model.on("change:expanded", follow);
  pane.addEventListener("click", (event) => {
    const row = event.target.closest("tr.nbflow-row");
    if (!row) return;
    const task = row.dataset.rowTask;
    const details = [...pane.querySelectorAll("tr[data-row-task] details")].find(
      (d) => d.closest("tr").dataset.rowTask === task,
    );
    if (details) details.open = !details.open;
  });
  return () => model.off("change:expanded", follow);
}

// A replay's controls (nf.replay): play/pause, a time slider, the time, a speed menu. The
// kernel plays (it moves `position` on while `playing`); the slider sets `position`.
function replayControls(model) {
  const bar = element("div", "nbflow-replay", { role: "group", "aria-label": "Replay" });
  const play = element("button", "nbflow-replay-play", { type: "button" });
  const slider = element("input", "nbflow-replay-slider", {
    type: "range",
    min: "0",
    "aria-label": "Moment of the run",
  });
  const time = element("span", "nbflow-replay-time");
  const speed = element("select", "nbflow-replay-speed", { "aria-label": "Speed" });
  bar.append(play, slider, time, speed);
  const seconds = (s) => (s < 10 ? s.toFixed(2) : s.toFixed(1)) + " s";
  let dragging = false;
  let sent = 0;
  let pending = null;
  const send = (value) => {
    // While dragging, at most ~12 moments a second go to the kernel (each is a redraw).
    clearTimeout(pending);
    const wait = sent + 80 - Date.now();
    if (wait > 0) {
      pending = setTimeout(() => send(value), wait);
      return;
    }
    sent = Date.now();
    model.set("position", value);
    model.save_changes();
  };
  play.addEventListener("click", () => {
    model.set("playing", !model.get("playing"));
    model.save_changes();
  });
  slider.addEventListener("pointerdown", () => (dragging = true));
  slider.addEventListener("pointerup", () => (dragging = false));
  slider.addEventListener("input", () => {
    // A range input snaps to its steps: the last one may fall just short of the end.
    const duration = model.get("duration");
    const value = +slider.value >= duration - +slider.step / 2 ? duration : +slider.value;
    time.textContent = `${seconds(value)} / ${seconds(duration)}`;
    send(value);
  });
  speed.addEventListener("change", () => {
    model.set("speed", +speed.value);
    model.save_changes();
  });
  function update() {
    const duration = model.get("duration");
    const position = model.get("position");
    const playing = model.get("playing");
    play.textContent = playing ? "❚❚ Pause" : "▶ Play";
    play.setAttribute("aria-pressed", String(playing));
    slider.max = String(duration);
    slider.step = String(duration / 1000 || 0.001);
    if (!dragging) slider.value = String(position);
    bar.dataset.position = String(position);
    time.textContent = `${seconds(position)} / ${seconds(duration)}`;
    const speeds = model.get("_speeds") || [];
    if (speed.options.length !== speeds.length) {
      speed.replaceChildren(
        ...speeds.map((s) => {
          const option = element("option", "", { value: String(s) });
          option.textContent = `${s}× speed`;
          return option;
        }),
      );
    }
    speed.value = String(model.get("speed"));
  }
  return { bar, update };
}

function render({ model, el }) {
  const id = `nbflow-dashboard-${++views}`;
  el.classList.add("nbflow-dashboard");
  const header = element("div", "nbflow-head");
  const tabs = element("div", "nbflow-tabs", { role: "tablist", "aria-label": "Dashboard views" });
  const body = element("div", "nbflow-body");
  const buttons = {};
  const panes = {};
  for (const [name, title] of PANES) {
    const button = element("button", "nbflow-tab", {
      type: "button",
      role: "tab",
      id: `${id}-${name}-tab`,
      "aria-controls": `${id}-${name}`,
      "data-pane": name,
    });
    button.textContent = title;
    button.addEventListener("click", () => {
      model.set("tab", name);
      model.save_changes();
    });
    tabs.append(button);
    buttons[name] = button;
    panes[name] = element("div", "nbflow-pane", {
      role: "tabpanel",
      id: `${id}-${name}`,
      "aria-labelledby": `${id}-${name}-tab`,
      "data-pane": name,
    });
    body.append(panes[name]);
  }
  // Arrow keys, Home and End move between tabs (the WAI-ARIA tabs pattern).
  tabs.addEventListener("keydown", (event) => {
    const names = PANES.map(([name]) => name);
    const at = names.indexOf(model.get("tab"));
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: names.length - 1 }[
      event.key
    ];
    if (to === undefined) return;
    event.preventDefault();
    const next = names[(to + names.length) % names.length];
    model.set("tab", next);
    model.save_changes();
    buttons[next].focus();
  });
  // The Timeline's lanes: one per task (or group), or one per worker.
  const lanes = element("div", "nbflow-lanes", { role: "radiogroup", "aria-label": "Lanes" });
  const laneButtons = {};
  for (const lane of ["task", "worker"]) {
    const button = element("button", "nbflow-lane-toggle", {
      type: "button",
      role: "radio",
      "data-lane": lane,
    });
    button.addEventListener("click", () => {
      model.set("lane_by", lane);
      model.save_changes();
    });
    lanes.append(button);
    laneButtons[lane] = button;
  }
  const unwatch = watchTasks(panes.table, model);
  const gantt = element("div", "nbflow-gantt");
  panes.gantt.append(lanes, gantt);
  const replay = model.get("_replay") ? replayControls(model) : null;
  el.replaceChildren(header, ...(replay ? [replay.bar] : []), tabs, body);

  // Where each part the kernel drew (trait _header, _dag, ...) goes.
  const targets = { header, dag: panes.dag, table: panes.table, gantt };
  function select() {
    const open = model.get("tab");
    for (const [name] of PANES) {
      buttons[name].setAttribute("aria-selected", String(name === open));
      buttons[name].tabIndex = name === open ? 0 : -1;
      panes[name].hidden = name !== open;
    }
  }
  function selectLane() {
    const lane = model.get("lane_by");
    laneButtons.task.textContent = model.get("_grouped") ? "Lane per group" : "Lane per task";
    laneButtons.worker.textContent = "Lane per worker";
    for (const [name, button] of Object.entries(laneButtons)) {
      button.setAttribute("aria-checked", String(name === lane));
    }
  }
  const listeners = [
    ...Object.entries(targets).map(([name, target]) => [
      `change:_${name}`,
      () => replace(target, model.get(`_${name}`)),
    ]),
    ["change:tab", select],
    ["change:lane_by", selectLane],
    ["change:_grouped", selectLane],
    ...(replay
      ? ["position", "playing", "speed", "duration", "_speeds"].map((name) => [
          `change:${name}`,
          replay.update,
        ])
      : []),
  ];
  for (const [events, callback] of listeners) model.on(events, callback);
  for (const [, callback] of listeners) callback(); // the first drawing
  return () => {
    for (const [events, callback] of listeners) model.off(events, callback);
    unwatch();
  };
}

export default { render };
