// edge viewer page: one tile and one RTCPeerConnection per camera, status refreshed every 2 s.
// The page follows the service's cameras as a config reload changes them: each refresh adds a
// tile for a camera that appeared and removes (closing its connection) the tile of one that went;
// every other tile, its video and its connection are left as they are.
// window.edge exposes the viewers so that tests (and curious users) can read timings and stats.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const onlyCamera = params.get("camera");
const GATHER_WAIT_MS = 250; // enough for host/mDNS candidates; STUN ones arrive by peer-reflexive
const RETRY_MS = 2000;

function withToken(path) {
  return token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path;
}

class ApiError extends Error {
  constructor(path, status, message, retryAfterS) {
    super(message ? `${message} (HTTP ${status})` : `${path}: HTTP ${status}`);
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    const retry = Number(res.headers.get("Retry-After")) || 0;
    throw new ApiError(path, res.status, body.error, retry);
  }
  return res.json();
}

function waitGathering(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, ms);
  });
}

class Viewer {
  constructor(camera, video, iceServers, note = null) {
    this.camera = camera;
    this.video = video;
    this.note = note; // where the tile says why there is no picture (slots full, ...)
    this.iceServers = iceServers;
    this.pc = null;
    this.session = null;
    this.codec = null;
    this.offerAt = null;
    this.firstFrameMs = null;
    this.error = null;
    this.closed = false;
  }

  async start() {
    if (this.closed) return;
    this.firstFrameMs = null;
    const pc = (this.pc = new RTCPeerConnection({ iceServers: this.iceServers }));
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.ontrack = (ev) => {
      this.video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      this.video.play().catch(() => {});
      // The server closes the connection (DTLS close_notify) when the camera stops: a config
      // reload restarted it with a new source (connect to its new stream) or removed it (the
      // next refresh removes the tile). ICE would only notice seconds later.
      const dtls = ev.receiver.transport;
      if (dtls) {
        dtls.addEventListener("statechange", () => {
          if (pc === this.pc && dtls.state === "closed" && !this.closed) this.restart();
        });
      }
    };
    pc.onconnectionstatechange = () => {
      if (pc === this.pc && pc.connectionState === "failed" && !this.closed) this.restart();
    };
    this.offerAt = performance.now();
    await pc.setLocalDescription(await pc.createOffer());
    await waitGathering(pc, GATHER_WAIT_MS);
    const answer = await api(`/api/cameras/${encodeURIComponent(this.camera.id)}/webrtc`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
    });
    this.session = answer.session;
    this.codec = answer.codec;
    this.error = null;
    if (this.note) this.note.textContent = "";
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.watchFirstFrame(pc);
  }

  watchFirstFrame(pc) {
    const mark = () => {
      if (pc === this.pc && this.firstFrameMs === null) {
        this.firstFrameMs = performance.now() - this.offerAt;
      }
    };
    if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(mark);
    const poll = async () => {
      if (pc !== this.pc || this.firstFrameMs !== null) return;
      const s = await this.stats();
      if (s.framesDecoded > 0) mark(); else setTimeout(poll, 10);
    };
    poll();
  }

  async stats() {
    const out = { framesDecoded: 0, frameWidth: 0, frameHeight: 0, framesPerSecond: 0 };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        Object.assign(out, {
          framesDecoded: s.framesDecoded || 0,
          frameWidth: s.frameWidth || 0,
          frameHeight: s.frameHeight || 0,
          framesPerSecond: s.framesPerSecond || 0,
          framesDropped: s.framesDropped || 0,
          keyFramesDecoded: s.keyFramesDecoded || 0,
        });
      }
    });
    out.videoWidth = this.video.videoWidth;
    out.videoHeight = this.video.videoHeight;
    out.firstFrameMs = this.firstFrameMs;
    out.codec = this.codec;
    out.connectionState = this.pc.connectionState;
    return out;
  }

  beacon() {
    if (this.session) navigator.sendBeacon(withToken(`/api/sessions/${this.session}/close`));
    this.session = null;
  }

  restart() {
    this.beacon();
    if (this.pc) this.pc.close();
    setTimeout(() => this.start().catch((e) => this.fail(e)), RETRY_MS);
  }

  fail(e) {
    if (this.closed) return;
    this.error = e.message || String(e);
    if (this.note) this.note.textContent = this.error;
    this.beacon();
    if (this.pc) this.pc.close();
    // a refused viewer (429/503) waits as long as the server asks before trying again
    const wait = Math.max(RETRY_MS, (e.retryAfterS || 0) * 1000);
    setTimeout(() => this.start().catch((err) => this.fail(err)), wait);
  }

  close() {
    this.closed = true;
    this.beacon();
    if (this.pc) this.pc.close();
    this.pc = null;
    this.video.srcObject = null;
  }
}

function countsText(counts) {
  const parts = [];
  for (const [line, perClass] of Object.entries(counts || {})) {
    const byDir = {};
    for (const dirs of Object.values(perClass)) {
      for (const [d, n] of Object.entries(dirs)) byDir[d] = (byDir[d] || 0) + n;
    }
    const text = Object.entries(byDir).map(([d, n]) => `${d} ${n}`).join(" / ");
    parts.push(`${line}: ${text || "0"}`);
  }
  return parts.join(" · ");
}

function makeTile(camera) {
  const tile = document.createElement("section");
  tile.className = "tile";
  tile.dataset.camera = camera.id;
  tile.innerHTML = `<div class="stage"><video autoplay muted playsinline></video></div>
    <div class="bar"><span class="name"></span><span class="state"></span>
    <span class="fps"></span><span class="counts"></span><span class="note"></span>
    <a class="link">open</a></div>`;
  tile.querySelector(".name").textContent = camera.name;
  const link = tile.querySelector(".link");
  link.href = withToken(`/?camera=${encodeURIComponent(camera.id)}`);
  link.addEventListener("click", (e) => e.stopPropagation());
  tile.addEventListener("click", () => tile.classList.toggle("big"));
  return tile;
}

function updateTile(tile, camera) {
  const state = tile.querySelector(".state");
  state.textContent = camera.state;
  state.className = `state ${camera.state}`;
  // why a camera does not stream: its last error (redacted by the server), on hover
  state.title = camera.last_error ? `${camera.last_error} (${camera.last_error_at})` : "";
  const fps = camera.fps && camera.fps.published;
  tile.querySelector(".fps").textContent = fps ? `${fps.toFixed(1)} fps` : "";
  tile.querySelector(".counts").textContent = countsText(camera.counts);
}

// The tiles on show, and what adding one needs (set up by main).
const page = { grid: null, iceServers: [], tiles: {}, editorsOn: false };

function addCamera(camera) {
  const tile = (page.tiles[camera.id] = makeTile(camera));
  if (onlyCamera) tile.classList.add("big");
  page.grid.appendChild(tile);
  updateTile(tile, camera);
  const viewer = new Viewer(camera, tile.querySelector("video"), page.iceServers, tile.querySelector(".note"));
  window.edge.viewers[camera.id] = viewer;
  viewer.start().catch((e) => viewer.fail(e));
  // an added camera's lines are read from the config when its editor opens
  if (page.editorsOn) window.edge.editors[camera.id] = new LineEditor(tile, camera, []);
}

function removeCamera(id) {
  window.edge.viewers[id].close();
  delete window.edge.viewers[id];
  if (window.edge.editors[id]) window.edge.editors[id].close();
  delete window.edge.editors[id];
  page.tiles[id].remove();
  delete page.tiles[id];
}

// The cameras the service runs now: a config reload may have added or removed some.
function follow(cameras) {
  const now = new Set(cameras.map((c) => c.id));
  for (const id of Object.keys(page.tiles)) if (!now.has(id)) removeCamera(id);
  for (const camera of cameras) if (!page.tiles[camera.id]) addCamera(camera);
}

async function refresh() {
  try {
    const { cameras } = await api("/api/cameras");
    const shown = cameras.filter((c) => !onlyCamera || c.id === onlyCamera);
    follow(shown);
    for (const c of shown) {
      updateTile(page.tiles[c.id], c);
      if (window.edge.editors[c.id]) window.edge.editors[c.id].setCamera(c);
    }
    const up = cameras.filter((c) => c.state === "streaming").length;
    document.getElementById("summary").textContent = `${up}/${cameras.length} cameras streaming`;
  } catch (e) {
    document.getElementById("summary").textContent = `status unavailable (${e.message})`;
  }
}

// With `edge run --shard K/N` each process serves a share of the cameras: name this shard and
// link to the others' pages (same token: the shards share one config).
async function showShards() {
  const shard = await api("/api/shard");
  if (shard.count < 2) return;
  const nav = document.getElementById("shards");
  nav.append(`shard ${shard.index}/${shard.count}`);
  for (const peer of shard.peers) {
    const a = document.createElement("a");
    a.href = withToken(peer.url.replace(/\/*$/, "/"));
    a.textContent = `shard ${peer.index}`;
    a.className = "peer";
    nav.append(" · ", a);
  }
  nav.hidden = false;
}

// The line editor (lines.js) only where the config API answers: it is off without a config
// file, and refused (403) when the server listens beyond loopback without a token.
async function startEditors(cameras) {
  let config;
  try {
    config = (await api("/api/config")).config;
  } catch (e) {
    return;
  }
  page.editorsOn = true;
  const lines = Object.fromEntries(config.cameras.map((c) => [c.id, c.lines]));
  for (const camera of cameras) {
    if (camera.id in lines && page.tiles[camera.id]) {
      window.edge.editors[camera.id] = new LineEditor(page.tiles[camera.id], camera, lines[camera.id]);
    }
  }
}

async function main() {
  page.grid = document.getElementById("grid");
  page.iceServers = (await api("/api/webrtc/config")).ice_servers;
  const { cameras } = await api("/api/cameras");
  const shown = cameras.filter((c) => !onlyCamera || c.id === onlyCamera);
  for (const camera of shown) addCamera(camera);
  await showShards().catch(() => {});
  await startEditors(shown);
  window.edge.ready = true;
  await refresh();
  setInterval(refresh, 2000);
}

window.edge = {
  viewers: {},
  editors: {},
  ready: false,
  async stats() {
    const out = {};
    for (const [id, v] of Object.entries(this.viewers)) out[id] = await v.stats();
    return out;
  },
  close() { for (const v of Object.values(this.viewers)) v.close(); },
};
window.addEventListener("pagehide", () => window.edge.close());
main().catch((e) => {
  const el = document.getElementById("error");
  el.textContent = `cannot load cameras: ${e.message}`;
  el.hidden = false;
});
