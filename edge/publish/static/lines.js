// Counting-line editor of the viewer page: on an enlarged camera, draw lines by clicking two
// points on the live video, drag their ends, name them and their two directions, delete them,
// and save (PUT /api/cameras/{id}/lines: the service writes cameras.yaml and reloads it).
// Shown only when the config API answers (GET /api/config), so app.js creates editors then.
//
// Coordinates are source pixels: the camera's own frame size (/api/cameras width/height), not
// the size the video is shown at, nor the size it is streamed at (stream.max_width may scale it
// down). A click maps through the picture's box inside the <video> element (object-fit: contain
// leaves bars) to a fraction of the picture, then to source pixels.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function copyLines(lines) {
  return (lines || []).map((l) => ({
    name: l.name,
    points: l.points.map((p) => [Math.round(p[0]), Math.round(p[1])]),
    directions: [l.directions[0], l.directions[1]],
  }));
}

class LineEditor {
  constructor(tile, camera, lines) {
    this.tile = tile;
    this.camera = camera; // refreshed by app.js: width/height arrive once the camera streams
    this.video = tile.querySelector("video");
    this.stage = tile.querySelector(".stage");
    this.lines = copyLines(lines);
    this.savedJson = JSON.stringify(this.lines);
    this.editing = false;
    this.adding = null; // null, [] (waiting for the first point) or [p1]
    this.drag = null;
    this.justDragged = false;
    this.saving = false;
    this.status = "";
    this.error = null;
    this.build();
    this.setCamera(camera);
  }

  build() {
    const button = (this.button = document.createElement("button"));
    button.className = "edit-lines";
    button.type = "button";
    button.textContent = "edit lines";
    button.addEventListener("click", (e) => { e.stopPropagation(); this.toggle(); });
    this.tile.querySelector(".bar").insertBefore(button, this.tile.querySelector(".link"));

    const panel = (this.panel = document.createElement("div"));
    panel.className = "line-editor";
    panel.hidden = true;
    panel.innerHTML = `<div class="tools"><button type="button" class="add">new line</button>
      <button type="button" class="save">save</button>
      <button type="button" class="close">close</button>
      <span class="status" role="status"></span></div>
      <table><thead><tr><th>line</th><th>direction 1 →</th><th>← direction 2</th>
      <th>points (source pixels)</th><th></th></tr></thead><tbody></tbody></table>`;
    panel.addEventListener("click", (e) => e.stopPropagation());
    panel.querySelector(".add").addEventListener("click", () => this.startAdding());
    panel.querySelector(".save").addEventListener("click", () => this.save());
    panel.querySelector(".close").addEventListener("click", () => this.toggle(false));
    this.tile.appendChild(panel);

    const overlay = (this.overlay = svg("svg", { class: "overlay", preserveAspectRatio: "none" }));
    overlay.style.display = "none";
    overlay.addEventListener("click", (e) => this.onClick(e));
    overlay.addEventListener("pointermove", (e) => this.onDrag(e));
    overlay.addEventListener("pointerup", () => this.endDrag());
    overlay.addEventListener("pointercancel", () => this.endDrag());
    this.stage.appendChild(overlay);
    this.onKeyDown = (e) => this.onKey(e);
    this.onResize = () => this.layout();
    document.addEventListener("keydown", this.onKeyDown);
    this.video.addEventListener("resize", this.onResize);
    window.addEventListener("resize", this.onResize);
    if (window.ResizeObserver) {
      this.resizeObserver = new ResizeObserver(this.onResize);
      this.resizeObserver.observe(this.video);
    }
  }

  // The camera went (a config reload removed it): let go of the page-wide listeners.
  close() {
    document.removeEventListener("keydown", this.onKeyDown);
    window.removeEventListener("resize", this.onResize);
    if (this.resizeObserver) this.resizeObserver.disconnect();
  }

  setCamera(camera) {
    this.camera = camera;
    const known = camera.width > 0 && camera.height > 0;
    this.button.disabled = !known;
    this.button.title = known ? "" : "the camera's frame size is not known yet";
    if (this.editing) this.layout();
  }

  get width() { return this.camera.width; }
  get height() { return this.camera.height; }

  get dirty() { return JSON.stringify(this.lines) !== this.savedJson; }

  toggle(on = !this.editing) {
    this.editing = on;
    this.panel.hidden = !on;
    this.overlay.style.display = on ? "" : "none";
    this.tile.classList.toggle("editing", on);
    if (!on) this.adding = null;
    this.renderTable();
    this.layout();
    if (on && !this.dirty) this.fetchLines(); // the file may have changed since the page loaded
  }

  async fetchLines() {
    try {
      const { config, last_reload: last } = await api("/api/config");
      if (last && last.result === "invalid") {
        this.setStatus(`the file's last change was refused: ${last.errors.join("; ")}`, true);
      }
      const camera = config.cameras.find((c) => c.id === this.camera.id);
      if (!camera || this.dirty) return;
      this.lines = copyLines(camera.lines);
      this.savedJson = JSON.stringify(this.lines);
      this.renderTable();
      this.render();
    } catch (e) {
      this.setStatus(`cannot read the config: ${e.message}`, true);
    }
  }

  onKey(e) {
    if (e.key === "Escape" && this.editing && this.adding !== null) {
      this.adding = null;
      this.setStatus("");
      this.render();
    }
  }

  // The picture's box in client pixels: object-fit: contain centres the frame in the element.
  pictureRect() {
    const r = this.video.getBoundingClientRect();
    const vw = this.video.videoWidth, vh = this.video.videoHeight;
    if (!vw || !vh || !r.width || !r.height) return null;
    const scale = Math.min(r.width / vw, r.height / vh);
    const w = vw * scale, h = vh * scale;
    return { left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, width: w, height: h };
  }

  // Client pixels → source pixels, rounded and kept inside the frame.
  toSource(clientX, clientY) {
    const pic = this.pictureRect();
    if (!pic || !this.width) return null;
    const clamp = (v, max) => Math.min(Math.max(Math.round(v), 0), max - 1);
    return [
      clamp(((clientX - pic.left) / pic.width) * this.width, this.width),
      clamp(((clientY - pic.top) / pic.height) * this.height, this.height),
    ];
  }

  layout() {
    const pic = this.pictureRect();
    if (!this.editing || !pic || !this.width) return this.render();
    const stage = this.stage.getBoundingClientRect();
    Object.assign(this.overlay.style, {
      left: `${pic.left - stage.left}px`, top: `${pic.top - stage.top}px`,
      width: `${pic.width}px`, height: `${pic.height}px`,
    });
    this.overlay.setAttribute("viewBox", `0 0 ${this.width} ${this.height}`);
    this.render();
  }

  startAdding() {
    this.adding = [];
    this.setStatus("click the line's first point on the video");
    this.render();
  }

  onClick(e) {
    e.stopPropagation(); // the tile would shrink
    const dragged = this.justDragged;
    this.justDragged = false;
    if (this.adding === null || dragged || e.target.classList.contains("handle")) return;
    const p = this.toSource(e.clientX, e.clientY);
    if (!p) return this.setStatus("no picture yet", true);
    this.adding.push(p);
    if (this.adding.length === 1) {
      this.setStatus("click the second point");
    } else if (this.adding[0][0] === p[0] && this.adding[0][1] === p[1]) {
      this.adding.pop();
      this.setStatus("the second point must differ from the first", true);
    } else {
      const taken = new Set(this.lines.map((l) => l.name));
      let n = this.lines.length + 1;
      while (taken.has(`line-${n}`)) n += 1;
      this.lines.push({ name: `line-${n}`, points: this.adding, directions: ["in", "out"] });
      this.adding = null;
      this.setStatus("name the line and its directions, then save");
      this.renderTable();
      const inputs = this.panel.querySelectorAll("tbody tr:last-child input.name");
      if (inputs.length) inputs[0].focus();
    }
    this.render();
  }

  startDrag(e, line, end) {
    e.stopPropagation();
    e.preventDefault();
    this.overlay.setPointerCapture(e.pointerId);
    this.drag = { line, end };
  }

  onDrag(e) {
    if (!this.drag) return;
    const p = this.toSource(e.clientX, e.clientY);
    if (!p) return;
    this.drag.line.points[this.drag.end] = p;
    this.render();
    this.renderCoords();
  }

  endDrag() {
    if (this.drag) {
      this.setStatus("moved; save to keep it");
      this.justDragged = true; // the click that ends a drag adds no point
    }
    this.drag = null;
  }

  // The overlay: each line with its name, its two ends (drag them) and an arrow per direction:
  // directions[0] counts crossings from the left to the right of p1→p2 (edge/track/lines.py).
  render() {
    const o = this.overlay;
    while (o.firstChild) o.removeChild(o.firstChild);
    if (!this.editing || !this.width) return;
    const unit = Math.max(this.width, this.height) / 100;
    this.lines.forEach((line) => {
      const [[x1, y1], [x2, y2]] = line.points;
      const g = svg("g", { class: "line" });
      g.dataset.name = line.name;
      g.appendChild(svg("line", { x1, y1, x2, y2 }));
      const len = Math.hypot(x2 - x1, y2 - y1) || 1;
      const nx = -(y2 - y1) / len, ny = (x2 - x1) / len; // right of p1→p2 (y grows down)
      const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
      [1, -1].forEach((sign, i) => {
        const ax = mx + sign * nx * unit * 4, ay = my + sign * ny * unit * 4;
        g.appendChild(svg("line", { class: "arrow", x1: mx, y1: my, x2: ax, y2: ay }));
        const label = svg("text", { x: ax + sign * nx * unit * 1.5, y: ay + sign * ny * unit * 1.5,
                                    "font-size": unit * 2.4, class: "dir" });
        label.textContent = line.directions[i];
        g.appendChild(label);
      });
      const name = svg("text", { x: x1, y: y1 - unit * 1.5, "font-size": unit * 2.8, class: "name" });
      name.textContent = line.name;
      g.appendChild(name);
      line.points.forEach(([x, y], end) => {
        const h = svg("circle", { cx: x, cy: y, r: unit * 1.2, class: "handle" });
        h.addEventListener("pointerdown", (e) => this.startDrag(e, line, end));
        g.appendChild(h);
      });
      o.appendChild(g);
    });
    if (this.adding && this.adding.length === 1) {
      const [x, y] = this.adding[0];
      o.appendChild(svg("circle", { cx: x, cy: y, r: unit, class: "pending" }));
    }
    o.classList.toggle("adding", this.adding !== null);
    this.panel.querySelector(".save").classList.toggle("dirty", this.dirty);
  }

  renderTable() {
    const body = this.panel.querySelector("tbody");
    body.textContent = "";
    this.lines.forEach((line, i) => {
      const tr = document.createElement("tr");
      tr.innerHTML = `<td><input class="name" aria-label="line name" maxlength="64"></td>
        <td><input class="dir0" aria-label="direction 1"></td>
        <td><input class="dir1" aria-label="direction 2"></td>
        <td class="coords"></td><td><button type="button" class="delete">delete</button></td>`;
      const bind = (cls, get, set) => {
        const input = tr.querySelector(cls);
        input.value = get();
        input.addEventListener("input", () => { set(input.value); this.render(); });
      };
      bind(".name", () => line.name, (v) => { line.name = v; });
      bind(".dir0", () => line.directions[0], (v) => { line.directions[0] = v; });
      bind(".dir1", () => line.directions[1], (v) => { line.directions[1] = v; });
      tr.querySelector(".delete").addEventListener("click", () => {
        this.lines.splice(i, 1);
        this.setStatus(`deleted ${line.name}; save to keep it`);
        this.renderTable();
        this.render();
      });
      body.appendChild(tr);
    });
    this.renderCoords();
  }

  renderCoords() {
    const cells = this.panel.querySelectorAll("tbody td.coords");
    this.lines.forEach((line, i) => {
      if (cells[i]) cells[i].textContent = line.points.map(([x, y]) => `(${x}, ${y})`).join(" → ");
    });
  }

  setStatus(text, isError = false) {
    this.status = text;
    this.error = isError ? text : null;
    const el = this.panel.querySelector(".status");
    el.textContent = text;
    el.classList.toggle("error", isError);
  }

  async save() {
    this.saving = true;
    this.setStatus("saving…");
    try {
      const answer = await api(`/api/cameras/${encodeURIComponent(this.camera.id)}/lines`, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ lines: this.lines }),
      });
      this.lines = copyLines(answer.lines);
      this.savedJson = JSON.stringify(this.lines);
      const reload = answer.reload || {};
      if (reload.result === "invalid" || reload.result === "failed") {
        this.setStatus(`saved, but the reload ${reload.result}: ${(reload.errors || []).join("; ")}`, true);
      } else {
        this.setStatus(`saved (${reload.result || "written"})`);
      }
      this.renderTable();
      this.render();
    } catch (e) {
      this.setStatus(`not saved: ${e.message}`, true);
    } finally {
      this.saving = false;
    }
  }
}
