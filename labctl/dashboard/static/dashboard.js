// labctl's dashboard: fetch JSON, draw, and fetch again whenever the server says something changed.
const labctl = (() => {
  const hours = s => (s == null ? null : s / 3600);
  const fmt = (x, digits = 3) => (x == null ? "not determined" : Number(x).toPrecision(digits));
  const el = (tag, text, cls) => { const e = document.createElement(tag); e.textContent = text; if (cls) e.className = cls; return e; };

  // Re-run `draw` now and on every server-sent "changed" event (no page reload).
  function live(draw) {
    const status = document.getElementById("status");
    draw().then(() => { status.textContent = "updated " + new Date().toLocaleTimeString(); },
                error => { status.textContent = "error: " + error; });
    const events = new EventSource("/api/events");
    events.addEventListener("changed", async () => {
      try { await draw(); status.textContent = "updated " + new Date().toLocaleTimeString(); }
      catch (error) { status.textContent = "error: " + error; }
    });
    events.onerror = () => { status.textContent = "reconnecting…"; };
  }

  async function getJSON(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    return response.json();
  }

  // ---- the lab overview ------------------------------------------------------------------------
  function overviewPage() {
    const key = () => document.getElementById("api-key").value || localStorage.getItem("labctl-key") || "";
    async function control(rig, action) {
      const response = await fetch(`/api/queues/${encodeURIComponent(rig)}/${action}`,
                                   { method: "POST", headers: { "X-API-Key": key() } });
      const answer = await response.json();
      document.getElementById("answer").textContent = answer.error || `${rig}: ${answer.done}`;
    }
    async function draw() {
      const view = await getJSON("/api/overview");
      document.getElementById("key-section").hidden = !view.controls;
      const body = document.querySelector("#rigs tbody");
      body.replaceChildren(...view.rigs.map(rig => {
        const row = document.createElement("tr");
        row.dataset.rig = rig.rig;
        const link = el("a", rig.rig); if (rig.uid) link.href = `/run/${rig.uid}`;
        const queue = view.queues[rig.rig];
        const cells = [link, el("span", rig.cell || ""), el("span", [rig.experiment, rig.step || rig.plan].filter(Boolean).join(": ")),
                       el("span", rig.state, "state-" + rig.state), el("span", rig.elapsed == null ? "" : `${hours(rig.elapsed).toFixed(2)} h`),
                       el("span", fmt(rig.plated_capacity)), el("span", fmt(rig.last_r_int)),
                       el("span", queue ? `${queue.state}, ${queue.queued ?? 0} queued` : "no queue"),
                       alertText(rig.last_alert)];
        const labels = [...document.querySelectorAll("#rigs thead th")].map(th => th.textContent);
        cells.forEach((content, i) => { const td = document.createElement("td"); td.dataset.label = labels[i]; td.append(content); row.append(td); });
        if (queue && view.controls) {
          const td = document.createElement("td"); td.className = "controls";
          for (const action of ["pause", "resume", "stop"]) {
            const button = el("button", action); button.dataset.action = action;
            button.onclick = () => control(rig.rig, action); td.append(button);
          }
          row.append(td);
        }
        return row;
      }));
      drawAlerts(view.alerts);
    }
    const alertText = alert => alert ? el("span", `${alert.event}: ${alert.body}`, "alert alert-" + alert.event)
                                     : el("span", "");
    function drawAlerts(alerts) {
      document.querySelector("#alerts tbody").replaceChildren(...alerts.map(alert => {
        const row = document.createElement("tr"); row.dataset.event = alert.event;
        const link = el("a", alert.rig); link.href = `/run/${alert.uid}`;
        const when = alert.time == null ? "" : new Date(alert.time * 1000).toLocaleString();
        const labels = [...document.querySelectorAll("#alerts thead th")].map(th => th.textContent);
        [el("span", when), link, el("span", alert.event, "alert-" + alert.event), el("span", alert.title),
         el("span", alert.body)].forEach((v, i) => {
          const td = document.createElement("td"); td.dataset.label = labels[i]; td.append(v); row.append(td);
        });
        return row;
      }));
    }
    document.getElementById("api-key").onchange = e => localStorage.setItem("labctl-key", e.target.value);
    live(draw);
  }

  // ---- one run -------------------------------------------------------------------------------
  const layout = (title, x, y, extra = {}) => ({ title: { text: title }, margin: { l: 55, r: 10, t: 35, b: 45 },
    xaxis: { title: { text: x } }, yaxis: { title: { text: y } }, legend: { orientation: "h" }, ...extra });
  const shortLine = (short, x) => short && x != null ? [{ type: "line", x0: x, x1: x, yref: "paper", y0: 0, y1: 1,
    line: { color: "#b00020", dash: "dot" } }] : [];

  function runPage() {
    const uid = location.pathname.split("/").pop();
    async function draw() {
      const run = await getJSON(`/api/runs/${uid}`);
      document.getElementById("title").textContent = `${run.plan} · ${run.cell || ""} · ${run.state}`;
      document.getElementById("summary").textContent =
        `${run.reason || "running"} — ${hours(run.elapsed).toFixed(2)} h, ${fmt(run.plated_capacity)} mAh/cm²`;
      const shortAt = run.short ? hours(run.short.time) : null;
      Plotly.react("voltage", [{ x: run.voltage.time.map(hours), y: run.voltage.ewe, mode: "lines", name: "Ewe" }],
        layout("Voltage (min/max per bucket)", "time (h)", "Ewe (V)", { shapes: shortLine(run.short, shortAt) }),
        { responsive: true });
      const spectra = run.spectra, last = spectra.length - 1;
      const nyquist = spectra.flatMap((s, i) => {
        const faded = i === last ? 1 : 0.25;
        const traces = [{ x: s.z_real, y: s.minus_z_imag, mode: "markers", name: `${hours(s.time).toFixed(2)} h`,
                          opacity: faded, showlegend: i === last }];
        if (s.fit_z_real) traces.push({ x: s.fit_z_real, y: s.fit_minus_z_imag, mode: "lines", opacity: faded,
                                        name: "fit", showlegend: i === last, line: { color: "black" } });
        return traces;
      });
      Plotly.react("nyquist", nyquist, layout("Spectra and fits", "Z' (Ω)", "−Z'' (Ω)",
        { yaxis: { title: { text: "−Z'' (Ω)" }, scaleanchor: "x" } }), { responsive: true });
      const r = run.resistances, x = (r.time || []).map(hours);
      const point = (y, err, name) => ({ x, y, error_y: { type: "data", array: err.map(e => 2 * (e ?? 0)) },
                                          mode: "markers+lines", name });
      Plotly.react("resistance", r.time ? [point(r.bulk, r.bulk_err, "R_bulk"), point(r.interface, r.interface_err, "R_int"),
                                             point(r.short, r.short_err, "R_short")] : [],
        layout("Resistances (2σ; gaps: not determined)", "time (h)", "ASR (Ω cm²)",
               { yaxis: { title: { text: "ASR (Ω cm²)" }, type: "log" }, shapes: shortLine(run.short, shortAt) }),
        { responsive: true });
      const drt = last >= 0 && spectra[last].drt_tau ? [{ x: spectra[last].drt_tau, y: spectra[last].drt_resistance,
                                                          mode: "lines", name: "DRT" }] : [];
      Plotly.react("drt", drt, layout("DRT of the latest spectrum", "τ (s)", "γ (Ω)",
        { xaxis: { title: { text: "τ (s)" }, type: "log" } }), { responsive: true });
      document.querySelector("#guards tbody").replaceChildren(...run.guards.map(g => {
        const row = document.createElement("tr");
        for (const v of [hours(g.time).toFixed(2), g.condition, fmt(g.value), g.decision]) row.append(el("td", v));
        return row;
      }));
    }
    live(draw);
  }

  return { overviewPage, runPage };
})();
