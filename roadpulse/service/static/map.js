// The road map: every straight piece of every segment drawn from the network's own geometry,
// coloured by the segment's display code (0-5 level, 6 closed). WebGL draws the whole network in
// one draw call: each piece as a quad (two triangles, width set in pixels by the vertex shader),
// or, for networks of more than LINES_ABOVE pieces, as a 1-pixel line (a third of the vertices,
// which is what keeps 100,000 segments interactive on software WebGL). Depth orders the levels
// so a jam or a closure is never hidden under a smooth road. A live update rewrites one byte per
// vertex of the changed segments and uploads the code buffer. Without WebGL a 2D canvas draws
// one batched path per code.
"use strict";

const LINES_ABOVE = 50000;

class RoadMap {
  constructor(canvas, tilesCanvas, overlayCanvas, palette) {
    this.canvas = canvas;
    this.tilesCanvas = tilesCanvas;
    this.overlay = overlayCanvas;
    this.palette = palette; // code -> [r, g, b] 0..1
    this.view = { cx: 0, cy: 0, mpp: 10 }; // centre (m, relative to origin), metres per CSS pixel
    this.dirty = true;
    this.selected = null; // [[x, y], ...] metres of a highlighted segment
    this.tileUrl = "";
    this.tileCache = new Map();
    this.stats = { draws: 0, lastDrawMs: 0, renderer: "none" };
    this._frame = this._frame.bind(this);
  }

  load(meta, buffer) {
    // buffer: float32 [x0, y0, x1, y1] per piece, then uint32 segment row per piece
    const n = meta.n_pieces;
    this.meta = meta;
    this.nPieces = n;
    this.ends = new Float32Array(buffer, 0, n * 4);
    this.owner = new Uint32Array(buffer, n * 16, n);
    let nSeg = 0;
    for (let i = 0; i < n; i++) nSeg = Math.max(nSeg, this.owner[i] + 1);
    // pieces are grouped by segment: pieceStart[s] .. pieceStart[s + 1]
    this.pieceStart = new Uint32Array(nSeg + 1);
    for (let i = 0; i < n; i++) this.pieceStart[this.owner[i] + 1]++;
    for (let s = 0; s < nSeg; s++) this.pieceStart[s + 1] += this.pieceStart[s];
    this.segCodes = new Uint8Array(nSeg);
    this.fit();
    this.gl = this.canvas.getContext("webgl2", { antialias: false, alpha: true, depth: true, preserveDrawingBuffer: true })
      || this.canvas.getContext("webgl", { antialias: false, alpha: true, depth: true, preserveDrawingBuffer: true });
    if (this.gl) this._initGL(); else this._init2D();
    this.requestDraw();
  }

  fit() {
    const e = this.meta.extent_m;
    const w = this.canvas.clientWidth || 800, h = this.canvas.clientHeight || 600;
    this.view.cx = (e[0] + e[2]) / 2;
    this.view.cy = (e[1] + e[3]) / 2;
    this.view.mpp = Math.max((e[2] - e[0]) / (w * 0.92), (e[3] - e[1]) / (h * 0.92), 0.05);
    this.requestDraw();
  }

  // ---- codes --------------------------------------------------------------------------------
  setAllCodes(text) {
    const n = Math.min(text.length, this.segCodes.length);
    for (let s = 0; s < n; s++) this.segCodes[s] = text.charCodeAt(s) - 48;
    this._writeCodes(null);
  }

  setCodes(rows, text) {
    for (let k = 0; k < rows.length; k++) {
      const s = rows[k];
      if (s < this.segCodes.length) this.segCodes[s] = text.charCodeAt(k) - 48;
    }
    this._writeCodes(rows);
  }

  _writeCodes(rows) {
    if (this.gl) {
      const vc = this.vertexCodes, per = this.vertsPerPiece, ps = this.pieceStart, sc = this.segCodes;
      const fill = (s) => { vc.fill(sc[s], ps[s] * per, ps[s + 1] * per); };
      if (rows === null) for (let s = 0; s < sc.length; s++) fill(s);
      else for (let k = 0; k < rows.length; k++) if (rows[k] < sc.length) fill(rows[k]);
      const gl = this.gl;
      gl.bindBuffer(gl.ARRAY_BUFFER, this.codeBuf);
      gl.bufferSubData(gl.ARRAY_BUFFER, 0, vc);
    } else {
      this.paths = null; // rebuilt at the next draw
    }
    this.requestDraw();
  }

  // ---- WebGL ----------------------------------------------------------------------------------
  _initGL() {
    const gl = this.gl;
    this.stats.renderer = (typeof WebGL2RenderingContext !== "undefined" && gl instanceof WebGL2RenderingContext)
      ? "webgl2" : "webgl";
    const vs = `
      attribute vec2 a_pos; attribute vec2 a_other; attribute float a_side; attribute float a_code;
      uniform vec2 u_center; uniform vec2 u_px; uniform float u_width; uniform float u_min_code;
      uniform float u_mpp; uniform vec3 u_palette[7];
      varying vec3 v_color;
      void main() {
        if (a_code < u_min_code) { gl_Position = vec4(2.0, 2.0, 2.0, 1.0); return; }
        vec2 p = (a_pos - u_center) * u_px;          // clip units
        vec2 o = (a_other - u_center) * u_px;
        vec2 dpx = (o - p) / u_px;                    // direction in metres (isotropic)
        float len = length(dpx);
        vec2 nrm = len > 0.0 ? vec2(-dpx.y, dpx.x) / len : vec2(0.0, 1.0);
        float w = u_width * (a_code >= 5.5 ? 2.4 : a_code >= 3.0 ? 1.6 : 1.0);
        // nearer for worse codes (closed 6 nearest, unknown 0 farthest): the depth test keeps them on top
        gl_Position = vec4(p + nrm * a_side * w * u_px * u_mpp, 0.5 - a_code * 0.07, 1.0);
        int c = int(a_code + 0.5);
        v_color = u_palette[c];
      }`;
    const fs = `precision mediump float; varying vec3 v_color;
      void main() { gl_FragColor = vec4(v_color, 1.0); }`;
    const prog = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
      const sh = gl.createShader(type);
      gl.shaderSource(sh, src);
      gl.compileShader(sh);
      if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(sh));
      gl.attachShader(prog, sh);
    }
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
    this.prog = prog;
    const n = this.nPieces, e = this.ends;
    this.lines = n > LINES_ABOVE;
    let pos, other, side;
    if (this.lines) {
      // 2 vertices per piece: the piece's own end points, no widening
      this.vertsPerPiece = 2;
      pos = e;
      other = e;
      side = new Float32Array(n * 2);
    } else {
      // 6 vertices per piece: (a, b, a) (b, b, a) with sides (+, +, -) (+, -, -)
      this.vertsPerPiece = 6;
      pos = new Float32Array(n * 12); other = new Float32Array(n * 12); side = new Float32Array(n * 6);
      const ENDS = [0, 1, 0, 1, 1, 0], SIDES = [1, 1, -1, 1, -1, -1];
      for (let i = 0; i < n; i++) {
        const ax = e[i * 4], ay = e[i * 4 + 1], bx = e[i * 4 + 2], by = e[i * 4 + 3];
        for (let k = 0; k < 6; k++) {
          const v = i * 6 + k, atB = ENDS[k] === 1;
          pos[v * 2] = atB ? bx : ax; pos[v * 2 + 1] = atB ? by : ay;
          other[v * 2] = atB ? ax : bx; other[v * 2 + 1] = atB ? ay : by;
          // the normal flips with the direction towards "other": flip the side at B to keep one edge
          side[v] = atB ? -SIDES[k] : SIDES[k];
        }
      }
    }
    this.vertexCodes = new Uint8Array(n * this.vertsPerPiece);
    const buf = (data, name, size, type) => {
      const b = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, b);
      gl.bufferData(gl.ARRAY_BUFFER, data, name === "a_code" ? gl.DYNAMIC_DRAW : gl.STATIC_DRAW);
      const loc = gl.getAttribLocation(prog, name);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, size, type, false, 0, 0);
      return b;
    };
    buf(pos, "a_pos", 2, gl.FLOAT);
    buf(other, "a_other", 2, gl.FLOAT);
    buf(side, "a_side", 1, gl.FLOAT);
    this.codeBuf = buf(this.vertexCodes, "a_code", 1, gl.UNSIGNED_BYTE);
    this.u = {};
    for (const name of ["u_center", "u_px", "u_width", "u_min_code", "u_palette", "u_mpp"]) {
      this.u[name] = gl.getUniformLocation(prog, name);
    }
  }

  _drawGL(w, h, dpr) {
    const gl = this.gl;
    gl.viewport(0, 0, w * dpr, h * dpr);
    gl.clearColor(0, 0, 0, 0);
    gl.clearDepth(1);
    gl.enable(gl.DEPTH_TEST);
    gl.depthFunc(gl.LEQUAL);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.useProgram(this.prog);
    const v = this.view;
    gl.uniform2f(this.u.u_center, v.cx, v.cy);
    // metres -> clip: 2 / (pixels * mpp)
    gl.uniform2f(this.u.u_px, 2 / (w * v.mpp), 2 / (h * v.mpp));
    gl.uniform1f(this.u.u_mpp, v.mpp);
    const widthPx = 1.3; // half-width in CSS pixels (quads only)
    gl.uniform1f(this.u.u_width, widthPx);
    const flat = [];
    for (let c = 0; c < 7; c++) flat.push(...this.palette[c]);
    gl.uniform3fv(this.u.u_palette, new Float32Array(flat));
    gl.uniform1f(this.u.u_min_code, 0);
    gl.drawArrays(this.lines ? gl.LINES : gl.TRIANGLES, 0, this.nPieces * this.vertsPerPiece);
  }

  // ---- 2D fallback ----------------------------------------------------------------------------
  _init2D() {
    this.ctx2d = this.canvas.getContext("2d");
    this.stats.renderer = "2d";
  }

  _draw2D(w, h, dpr) {
    const ctx = this.ctx2d, v = this.view, e = this.ends, o = this.owner, sc = this.segCodes;
    if (!this.paths || this.pathsMpp !== v.mpp) {
      this.paths = [];
      for (let c = 0; c < 7; c++) this.paths.push(new Path2D());
      for (let i = 0; i < this.nPieces; i++) {
        const p = this.paths[sc[o[i]]];
        p.moveTo(e[i * 4], -e[i * 4 + 1]);
        p.lineTo(e[i * 4 + 2], -e[i * 4 + 3]);
      }
      this.pathsMpp = v.mpp;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const k = 1 / v.mpp;
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * (w / 2 - v.cx * k), dpr * (h / 2 + v.cy * k));
    for (const c of [0, 1, 2, 3, 4, 5, 6]) {
      const [r, g, b] = this.palette[c];
      ctx.strokeStyle = `rgb(${r * 255},${g * 255},${b * 255})`;
      ctx.lineWidth = (c >= 3 ? 3.2 : 2) * v.mpp * (this.nPieces > 50000 ? 0.5 : 1);
      ctx.stroke(this.paths[c]);
    }
  }

  // ---- tiles (optional) -----------------------------------------------------------------------
  _drawTiles(w, h, dpr) {
    const ctx = this.tilesCanvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!this.tileUrl || this.meta.crs !== "EPSG:3857") return;
    const R = 6378137, world = 2 * Math.PI * R, v = this.view, [ox, oy] = this.meta.origin;
    const z = Math.max(0, Math.min(19, Math.round(Math.log2(world / (256 * v.mpp)))));
    const tileM = world / 2 ** z;
    const gx0 = ox + v.cx - (w / 2) * v.mpp, gx1 = ox + v.cx + (w / 2) * v.mpp;
    const gy0 = oy + v.cy - (h / 2) * v.mpp, gy1 = oy + v.cy + (h / 2) * v.mpp;
    const tx0 = Math.floor((gx0 + world / 2) / tileM), tx1 = Math.floor((gx1 + world / 2) / tileM);
    const ty0 = Math.floor((world / 2 - gy1) / tileM), ty1 = Math.floor((world / 2 - gy0) / tileM);
    if ((tx1 - tx0 + 1) * (ty1 - ty0 + 1) > 64) return;
    for (let tx = tx0; tx <= tx1; tx++) for (let ty = ty0; ty <= ty1; ty++) {
      if (ty < 0 || ty >= 2 ** z) continue;
      const url = this.tileUrl.replace("{z}", z).replace("{x}", ((tx % 2 ** z) + 2 ** z) % 2 ** z).replace("{y}", ty);
      let img = this.tileCache.get(url);
      if (!img) {
        img = new Image();
        img.onload = () => this.requestDraw();
        img.src = url;
        this.tileCache.set(url, img);
      }
      if (!img.complete || !img.naturalWidth) continue;
      const left = tx * tileM - world / 2 - ox, top = world / 2 - ty * tileM - oy;
      const sx = w / 2 + (left - v.cx) / v.mpp, sy = h / 2 - (top - v.cy) / v.mpp;
      ctx.drawImage(img, sx, sy, tileM / v.mpp + 0.5, tileM / v.mpp + 0.5);
    }
  }

  // ---- frame loop -----------------------------------------------------------------------------
  // A full draw re-rasterises the network: on software WebGL that is ~0.1-0.3 s for 100,000
  // segments. So on large networks panning and zooming only move the last image (a CSS transform,
  // done by the compositor) and the full draw follows once the view has settled; live updates
  // always draw in full. Small networks draw in full every frame.
  requestDraw() {
    this.fullPending = true;
    this._schedule();
  }

  requestCompose() {
    if (!this.composeOnly()) { this.requestDraw(); return; }
    this.composePending = true;
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => this.requestDraw(), 150);
    this._schedule();
  }

  composeOnly() { return this.nPieces > LINES_ABOVE; }

  _schedule() {
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(this._frame);
    }
  }

  _frame() {
    this.pending = false;
    if (!this.ends) return;
    const t0 = performance.now();
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    if (!this.fullPending && this.composePending && this.drawnView) {
      this.composePending = false;
      const d = this.drawnView, v = this.view, k = d.mpp / v.mpp;
      const tf = `translate(${(d.cx - v.cx) / v.mpp}px, ${(v.cy - d.cy) / v.mpp}px) scale(${k})`;
      this.canvas.style.transform = tf;
      this.tilesCanvas.style.transform = tf;
      this._drawOverlay(w, h, dpr);
      this.stats.composes = (this.stats.composes || 0) + 1;
      return;
    }
    this.fullPending = false;
    this.composePending = false;
    for (const c of [this.canvas, this.tilesCanvas, this.overlay]) {
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
    }
    this._drawTiles(w, h, dpr);
    if (this.gl) this._drawGL(w, h, dpr); else this._draw2D(w, h, dpr);
    this.canvas.style.transform = "";
    this.tilesCanvas.style.transform = "";
    this.drawnView = Object.assign({}, this.view);
    this._drawOverlay(w, h, dpr);
    this.stats.draws++;
    this.stats.lastDrawMs = performance.now() - t0;
    if (this.onDraw) this.onDraw(this.stats);
  }

  // Time of one full draw including the rasteriser (reads a pixel back to wait for it): benchmarks.
  measureFullDrawMs() {
    const dpr = window.devicePixelRatio || 1, w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    const t0 = performance.now();
    if (this.gl) {
      this._drawGL(w, h, dpr);
      this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, new Uint8Array(4));
    } else {
      this._draw2D(w, h, dpr);
      this.ctx2d.getImageData(0, 0, 1, 1);
    }
    return performance.now() - t0;
  }

  _drawOverlay(w, h, dpr) {
    const ctx = this.overlay.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!this.selected) return;
    ctx.strokeStyle = "#00e5ff";
    ctx.lineWidth = 5;
    ctx.globalAlpha = 0.8;
    ctx.beginPath();
    this.selected.forEach(([x, y], k) => {
      const [sx, sy] = this.toScreen(x, y, w, h);
      if (k === 0) ctx.moveTo(sx, sy); else ctx.lineTo(sx, sy);
    });
    ctx.stroke();
    ctx.globalAlpha = 1;
  }

  // ---- coordinates and interaction --------------------------------------------------------------
  toScreen(x, y, w, h) {
    const v = this.view;
    return [w / 2 + (x - v.cx) / v.mpp, h / 2 - (y - v.cy) / v.mpp];
  }

  toMetres(sx, sy) {
    const v = this.view, w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    return [v.cx + (sx - w / 2) * v.mpp, v.cy - (sy - h / 2) * v.mpp];
  }

  // metres (relative to origin) <-> the network's own coordinates (lon/lat or metric x/y)
  toLonLat(x, y) {
    const [ox, oy] = this.meta.origin;
    if (this.meta.crs !== "EPSG:3857") return [x + ox, y + oy];
    const R = 6378137;
    return [((x + ox) / R) * 180 / Math.PI, (2 * Math.atan(Math.exp((y + oy) / R)) - Math.PI / 2) * 180 / Math.PI];
  }

  fromLonLat(lon, lat) {
    const [ox, oy] = this.meta.origin;
    if (this.meta.crs !== "EPSG:3857") return [lon - ox, lat - oy];
    const R = 6378137;
    return [R * lon * Math.PI / 180 - ox, R * Math.log(Math.tan(Math.PI / 4 + lat * Math.PI / 360)) - oy];
  }

  zoomAt(sx, sy, factor) {
    const [mx, my] = this.toMetres(sx, sy);
    this.view.mpp = Math.min(Math.max(this.view.mpp * factor, 0.02), 1e5);
    const [nx, ny] = this.toMetres(sx, sy);
    this.view.cx += mx - nx;
    this.view.cy += my - ny;
    this.requestCompose();
  }

  panBy(dxPx, dyPx) {
    this.view.cx -= dxPx * this.view.mpp;
    this.view.cy += dyPx * this.view.mpp;
    this.requestCompose();
  }

  centreOn(x, y, mpp) {
    this.view.cx = x;
    this.view.cy = y;
    if (mpp) this.view.mpp = mpp;
    this.requestDraw();
  }

  attachInteraction(onClick) {
    const c = this.overlay;
    let drag = null;
    c.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = c.getBoundingClientRect();
      this.zoomAt(ev.clientX - r.left, ev.clientY - r.top, Math.exp(ev.deltaY * 0.0015));
    }, { passive: false });
    c.addEventListener("pointerdown", (ev) => { drag = { x: ev.clientX, y: ev.clientY, moved: 0 }; });
    c.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      drag.moved += Math.abs(dx) + Math.abs(dy);
      drag.x = ev.clientX; drag.y = ev.clientY;
      this.panBy(dx, dy);
    });
    c.addEventListener("pointerup", (ev) => {
      if (drag && drag.moved < 4 && onClick) {
        const r = c.getBoundingClientRect();
        onClick(ev.clientX - r.left, ev.clientY - r.top);
      }
      drag = null;
    });
    window.addEventListener("resize", () => this.requestDraw());
  }
}

window.RoadMap = RoadMap;
