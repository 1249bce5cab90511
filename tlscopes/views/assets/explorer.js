// tlscopes explorer: one prompt explained at every position, rendered from a JSON payload.
// With a "features" section it also lists SAE features at one position: clicking a feature
// colours the tokens by its token map, clicking a token then lists the features it drives most.
// Every piece of text from the payload goes into the page with textContent (never as markup).
// Long prompts (thousands of tokens): the token spans are built once and a redraw writes only
// what changed (a colour from a precomputed table, a class, a score label); the layer x token
// map is one canvas, redrawn only when what it shows changes, with neighbouring tokens drawn
// as one column (their largest score) when there are more tokens than pixels across.
(function () {
  "use strict";
  if (window.TlscopesExplorer) {
    window.TlscopesExplorer.mountAll();
    return;
  }
  const COLORMAPS = {
    blues: ["#ffffff", "#c6dbef", "#6baed6", "#2171b5", "#08306b"],
    oranges: ["#ffffff", "#fdd0a2", "#fd8d3c", "#d94801", "#7f2704"],
    greys: ["#ffffff", "#d9d9d9", "#969696", "#525252", "#000000"],
    viridis: ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"],
    magma: ["#000004", "#51127c", "#b73779", "#fc8961", "#fcfdbf"],
  };
  const LOG_DECADES = 4;
  const DRIVERS_SHOWN = 10;
  const SVG = "http://www.w3.org/2000/svg";
  // Colours are looked up in a table of this many levels per colormap (finer than a colour
  // channel's 256 steps can show), not computed per token.
  const LEVELS = 1024;
  // The layer map: the widest cell, the tallest row and the height it aims at, in CSS pixels;
  // the left gutter holds the layer labels.
  const LAYER_CELL = 14, LAYER_ROW = 14, LAYER_HEIGHT = 360, LAYER_GUTTER = 34;
  const MASKED_RGB = [221, 221, 221];

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    return node;
  }
  function hex(color) {
    return [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  }
  function colormap(name, t) {
    const stops = COLORMAPS[name] || COLORMAPS.blues;
    const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2);
    const a = hex(stops[i]), b = hex(stops[i + 1]), f = x - i;
    return a.map((v, k) => Math.round(v + (b[k] - v) * f));
  }
  function css(rgb) {
    return "rgb(" + rgb.join(", ") + ")";
  }
  function ink(rgb) {
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140 ? "#fff" : "#111";
  }
  const palettes = {};
  function palette(name) {
    if (!palettes[name]) {
      const rgb = [], fill = [], text = [];
      for (let i = 0; i < LEVELS; i++) {
        const colour = colormap(name, i / (LEVELS - 1));
        rgb.push(colour);
        fill.push(css(colour));
        text.push(ink(colour));
      }
      palettes[name] = { rgb: rgb, fill: fill, text: text };
    }
    return palettes[name];
  }
  function shade(t) {
    return Math.round(Math.min(Math.max(t, 0), 1) * (LEVELS - 1));
  }
  function fmt(value) {
    if (value === null || value === undefined) return "n/a";
    return Number(value).toPrecision(3);
  }
  function option(select, value, label) {
    const node = el("option", "", label);
    node.value = value;
    select.appendChild(node);
  }
  function labelled(text, control) {
    const label = el("label", "", text + " ");
    label.appendChild(control);
    return label;
  }
  function checkbox(className, checked) {
    const box = el("input", className);
    box.type = "checkbox";
    box.checked = checked;
    return box;
  }

  function mount(container, data) {
    container.textContent = "";
    container.classList.add("tlx");
    container.dataset.mounted = "1";
    const features = data.features || null;
    const state = {
      scope: 0,
      row: data.positions.length - 1,
      scale: "linear",
      cmap: "blues",
      masked: new Set(data.masked || []),
      // The listed feature that colours the tokens (an index into features.items), or null
      // while a scope does; and the token whose features are listed in the reverse view.
      feature: null,
      token: features ? features.position : null,
      // Bumped whenever the masked set changes (what the layer map's drawing depends on).
      maskVersion: 0,
      view: null,
    };
    if (features) (features.masked || []).forEach((t) => state.masked.add(t));
    const rowOf = new Map(data.positions.map((p, i) => [p, i]));

    const controls = el("div", "tlx-controls");
    const scopeSelect = el("select", "tlx-scope");
    data.scopes.forEach((s, i) => option(scopeSelect, String(i), s.name));
    const scaleSelect = el("select", "tlx-scale");
    option(scaleSelect, "linear", "linear");
    option(scaleSelect, "log", "log");
    const cmapSelect = el("select", "tlx-cmap");
    Object.keys(COLORMAPS).forEach((name) => option(cmapSelect, name, name));
    const hoverBox = checkbox("tlx-hover", false);
    const maskBox = checkbox("tlx-maskmode", false);
    const unmask = el("button", "tlx-unmask", "unmask all");
    unmask.type = "button";
    controls.append(
      labelled("scope", scopeSelect),
      labelled("colour", scaleSelect),
      labelled("colormap", cmapSelect),
      labelled("hover explains", hoverBox),
      labelled("click masks", maskBox),
      unmask
    );
    container.appendChild(controls);
    const status = el("div", "tlx-status");
    const note = el("div", "tlx-note");
    const legend = el("div", "tlx-legend");
    const legendLow = el("span", "tlx-low"), legendBar = el("span", "tlx-bar");
    const legendHigh = el("span", "tlx-high"), legendNote = el("span", "tlx-note");
    legend.append(legendLow, legendBar, legendHigh, legendNote);
    const tokens = el("div", "tlx-tokens");
    const hoverInfo = el("div", "tlx-note tlx-hover-info", "Hover a token for its score.");
    container.append(status, note, legend, tokens, hoverInfo);
    const spans = data.tokens.map((token, position) => {
      const span = el("span", "tlx-token", token);
      span.dataset.pos = String(position);
      if (rowOf.has(position)) span.classList.add("tlx-selectable");
      // A line may break between two tokens (<wbr>), so a long text wraps; inside a token every
      // space stays visible (white-space: break-spaces).
      if (position > 0) tokens.appendChild(document.createElement("wbr"));
      tokens.appendChild(span);
      return span;
    });
    // What each span shows now, so that a redraw writes only what changed.
    const shown = { source: null, scores: [], flags: new Int8Array(spans.length).fill(-1), fill: [], ink: [] };
    const featureBox = el("div", "tlx-panels tlx-feature-box");
    const featurePanel = el("div", "tlx-panel tlx-features");
    const driverPanel = el("div", "tlx-panel tlx-drivers");
    if (features) {
      featureBox.append(featurePanel, driverPanel);
      container.appendChild(featureBox);
    }
    const panels = el("div", "tlx-panels");
    const predictionPanel = el("div", "tlx-panel tlx-bars tlx-prediction");
    const topPanel = el("div", "tlx-panel tlx-top");
    panels.append(predictionPanel, topPanel);
    const seriesPanel = el("div", "tlx-panel tlx-series");
    const layerPanel = el("div", "tlx-panel tlx-layer-panel");
    container.append(panels, seriesPanel, layerPanel);
    const layerCanvas = el("canvas", "tlx-layer-map");
    layerCanvas.setAttribute("role", "img");
    const layerInfo = el("div", "tlx-note tlx-layer-info");
    const layer = { key: null, room: null, geometry: null, map: null };

    function current() {
      const scope = data.scopes[state.scope];
      if (state.feature !== null) {
        return scaled(scope, features.items[state.feature], features.position, features.items[state.feature].row);
      }
      return scaled(scope, null, data.positions[state.row], scope.rows[state.row]);
    }
    function scaled(scope, feature, position, row) {
      const n = data.tokens.length;
      const scores = new Array(n), live = new Array(n);
      let peak = 0, total = 0, smallest = Infinity;
      for (let t = 0; t < n; t++) {
        const s = t < row.length && row[t] !== null ? row[t] : 0;
        scores[t] = s;
        live[t] = t <= position && !state.masked.has(t);
        if (!live[t]) continue;
        peak = Math.max(peak, s);
        total += s;
        if (s > 0) smallest = Math.min(smallest, s);
      }
      const low = Math.max(smallest === Infinity ? peak : smallest, peak * Math.pow(10, -LOG_DECADES));
      return { scope, feature, position, scores, live, peak, total, low, source: row };
    }
    function level(view, value) {
      if (!(view.peak > 0) || !(value > 0)) return 0;
      if (state.scale === "log") {
        if (view.low >= view.peak) return 1;
        const t = (Math.log10(value) - Math.log10(view.low)) / (Math.log10(view.peak) - Math.log10(view.low));
        return Math.min(Math.max(t, 0), 1);
      }
      return value / view.peak;
    }
    function explain(position) {
      if (!rowOf.has(position)) return;
      state.row = rowOf.get(position);
      render();
    }

    function renderBars(view) {
      predictionPanel.textContent = "";
      // A feature is read at a hook point, not at the prediction: no bars beside its map.
      predictionPanel.style.display = view.feature ? "none" : "";
      if (view.feature) return;
      predictionPanel.appendChild(el("h3", "", "prediction after position " + view.position));
      const shown = data.predictions[state.row] || [];
      const top = shown.reduce((m, p) => Math.max(m, p[1] || 0), 0) || 1;
      for (const [token, prob] of shown) {
        const line = el("div", "tlx-row");
        const fill = el("div", "tlx-fill");
        fill.style.width = (10 * (prob || 0) / top).toFixed(2) + "em";
        line.append(el("span", "tlx-label", token), fill, el("span", "tlx-value", fmt(prob)));
        predictionPanel.appendChild(line);
      }
    }
    function renderTop(view) {
      topPanel.textContent = "";
      topPanel.appendChild(el("h3", "", "most influential tokens (masked left out)"));
      const table = el("table");
      const head = el("tr");
      ["position", "token", "score", "share"].forEach((h) => head.appendChild(el("th", "", h)));
      table.appendChild(head);
      const order = view.scores.map((s, t) => t).filter((t) => view.live[t]);
      order.sort((a, b) => view.scores[b] - view.scores[a] || a - b);
      for (const t of order.slice(0, 10)) {
        const tr = el("tr");
        const share = view.total > 0 ? (100 * view.scores[t]) / view.total : 0;
        tr.append(
          el("td", "tlx-num", String(t)),
          el("td", "tlx-tok", data.tokens[t]),
          el("td", "tlx-num", fmt(view.scores[t])),
          el("td", "tlx-num", share.toFixed(1) + "%")
        );
        table.appendChild(tr);
      }
      topPanel.appendChild(table);
    }
    function renderSeries(view) {
      seriesPanel.textContent = "";
      if (!data.series) return;
      const values = data.series.values, groups = data.series.groups;
      seriesPanel.appendChild(el("h3", "", "time series: values (line) and their influence (bars; delimiters left out)"));
      const width = Math.max(320, Math.min(900, 14 * values.length)), height = 190, pad = 24;
      const plot = svg("svg", { width: width, height: height, class: "tlx-series-plot" });
      const lo = Math.min(...values), hi = Math.max(...values);
      const step = (width - 2 * pad) / values.length;
      const x = (i) => pad + (i + 0.5) * step;
      const y = (v) => pad + (height / 2 - pad) * (hi > lo ? (hi - v) / (hi - lo) : 0.5);
      [[hi, y(hi)], [lo, y(lo)]].forEach(([v, at]) => {
        const label = svg("text", { x: 2, y: at + 4, "font-size": 10, fill: "#555" });
        label.textContent = String(v);
        plot.appendChild(label);
      });
      const influence = groups.map((g) => {
        const live = g.filter((t) => view.live[t]);
        if (!live.length) return null;
        return Math.sqrt(live.reduce((sum, t) => sum + view.scores[t] * view.scores[t], 0));
      });
      const peak = influence.reduce((m, v) => (v === null ? m : Math.max(m, v)), 0);
      const barWidth = Math.max(2, Math.min(step * 0.7, 24));
      influence.forEach((v, i) => {
        const h = peak > 0 && v !== null ? (height / 2 - pad) * (v / peak) : 0;
        const bar = svg("rect", { x: x(i) - barWidth / 2, y: height - pad - h, width: barWidth, height: h, fill: v === null ? "#ccc" : css(colormap(state.cmap, 0.75)), class: "tlx-influence" });
        const title = svg("title", {});
        title.textContent = "value " + i + " = " + values[i] + ": influence " + fmt(v);
        bar.appendChild(title);
        bar.dataset.value = String(i);
        plot.appendChild(bar);
      });
      plot.appendChild(svg("polyline", { points: values.map((v, i) => x(i) + "," + y(v)).join(" "), fill: "none", stroke: "#444", "stroke-width": 1.5 }));
      values.forEach((v, i) => {
        const dot = svg("circle", { cx: x(i), cy: y(v), r: 3, fill: "#d62728", class: "tlx-point" });
        const title = svg("title", {});
        title.textContent = "value " + i + " = " + v;
        dot.appendChild(title);
        plot.appendChild(dot);
      });
      seriesPanel.appendChild(plot);
    }
    function renderLayers(view) {
      const map = view.feature ? null : (data.layers || []).find((m) => m.scope === view.scope.name) || null;
      const drawn = Boolean(map) && map.position === view.position;
      // Redrawn only when what it shows changes: a click elsewhere leaves the canvas alone.
      const key = map ? [map.scope, drawn, state.cmap, state.scale, state.maskVersion].join("|") : "";
      if (key === layer.key) return;
      layer.key = key;
      layerPanel.textContent = "";
      if (!map) return;
      layerPanel.appendChild(el("h3", "", "layer × token map (" + map.scope + ", position " + map.position + "; rows: layers 0 to " + (map.rows.length - 1) + ")"));
      if (!drawn) {
        const go = el("button", "tlx-layer-go", "show position " + map.position);
        go.type = "button";
        go.addEventListener("click", () => explain(map.position));
        layerPanel.appendChild(go);
        return;
      }
      layerPanel.append(layerCanvas, layerInfo);
      drawLayers(map);
    }
    function drawLayers(map) {
      const layers = map.rows.length, tokenCount = map.rows[0].length;
      // The width it may take, read once (a layout) and again after the window is resized; a
      // page not laid out yet (hidden) gets a guess and is measured at the next drawing.
      if (layer.room === null) {
        const width = Math.floor(layerPanel.getBoundingClientRect().width);
        if (width > 0) layer.room = Math.max(160, width - LAYER_GUTTER - 4);
      }
      const room = layer.room === null ? 800 : layer.room;
      // One column per token while each gets a pixel; beyond that, neighbouring tokens share one.
      const perColumn = Math.max(1, Math.ceil(tokenCount / room));
      const columns = Math.ceil(tokenCount / perColumn);
      const cell = perColumn > 1 ? 1 : Math.max(1, Math.min(LAYER_CELL, Math.floor(room / columns)));
      const rowHeight = Math.max(3, Math.min(LAYER_ROW, Math.floor(LAYER_HEIGHT / layers)));
      let peak = 0;
      map.rows.forEach((r) => r.forEach((v, t) => { if (v !== null && !state.masked.has(t)) peak = Math.max(peak, v); }));
      const scale = { peak: peak, low: peak * Math.pow(10, -LOG_DECADES) };
      const colours = palette(state.cmap).rgb;
      const image = new ImageData(columns, layers);
      for (let l = 0; l < layers; l++) {
        const r = map.rows[l];
        for (let c = 0; c < columns; c++) {
          let value = -1;
          for (let t = c * perColumn, end = Math.min(tokenCount, (c + 1) * perColumn); t < end; t++) {
            if (!state.masked.has(t)) value = Math.max(value, r[t] || 0);
          }
          const rgb = value < 0 ? MASKED_RGB : colours[shade(level(scale, value))];
          const at = 4 * (l * columns + c);
          image.data[at] = rgb[0];
          image.data[at + 1] = rgb[1];
          image.data[at + 2] = rgb[2];
          image.data[at + 3] = 255;
        }
      }
      const small = document.createElement("canvas");
      small.width = columns;
      small.height = layers;
      small.getContext("2d").putImageData(image, 0, 0);
      const ratio = window.devicePixelRatio || 1;
      const width = LAYER_GUTTER + columns * cell, height = layers * rowHeight;
      layerCanvas.width = Math.round(width * ratio);
      layerCanvas.height = Math.round(height * ratio);
      layerCanvas.style.width = width + "px";
      layerCanvas.style.height = height + "px";
      const context = layerCanvas.getContext("2d");
      context.setTransform(ratio, 0, 0, ratio, 0, 0);
      context.clearRect(0, 0, width, height);
      context.imageSmoothingEnabled = false;
      context.drawImage(small, LAYER_GUTTER, 0, columns * cell, height);
      context.fillStyle = "#555";
      context.font = Math.min(11, rowHeight) + "px system-ui, sans-serif";
      context.textBaseline = "middle";
      const every = Math.ceil(10 / rowHeight);
      for (let l = 0; l < layers; l += every) context.fillText("L" + l, 2, (l + 0.5) * rowHeight);
      layer.map = map;
      layer.geometry = { layers: layers, columns: columns, perColumn: perColumn, cell: cell, rowHeight: rowHeight };
      const canvasData = layerCanvas.dataset;
      canvasData.layers = String(layers);
      canvasData.columns = String(columns);
      canvasData.tokensPerColumn = String(perColumn);
      canvasData.cellWidth = String(cell);
      canvasData.rowHeight = String(rowHeight);
      canvasData.gutter = String(LAYER_GUTTER);
      layerCanvas.setAttribute("aria-label", "layer × token map: " + layers + " layers by " + tokenCount + " tokens" + (perColumn > 1 ? ", " + perColumn + " tokens per column (their largest score)" : ""));
      layerInfo.textContent = perColumn > 1
        ? "Each column is " + perColumn + " neighbouring tokens, coloured by their largest score. Point at the map for the scores."
        : "Point at the map for a cell's score.";
    }
    function describeLayerCell(event) {
      const geometry = layer.geometry, map = layer.map;
      if (!geometry) return;
      const box = layerCanvas.getBoundingClientRect();
      const l = Math.floor((event.clientY - box.top) / geometry.rowHeight);
      const c = Math.floor((event.clientX - box.left - LAYER_GUTTER) / geometry.cell);
      if (l < 0 || l >= geometry.layers || c < 0 || c >= geometry.columns) return;
      const r = map.rows[l], first = c * geometry.perColumn;
      const last = Math.min(r.length, first + geometry.perColumn) - 1;
      let best = first;
      for (let t = first; t <= last; t++) if ((r[t] || 0) > (r[best] || 0)) best = t;
      const masked = state.masked.has(best) ? " (masked)" : "";
      layerInfo.textContent = first === last
        ? "layer " + l + ", position " + first + " " + JSON.stringify(data.tokens[first]) + ": " + fmt(r[first]) + masked
        : "layer " + l + ", positions " + first + " to " + last + ": largest " + fmt(r[best]) + " at position " + best + " " + JSON.stringify(data.tokens[best]) + masked;
    }
    layerCanvas.addEventListener("mousemove", describeLayerCell);
    window.addEventListener("resize", () => {
      layer.room = null;
      layer.key = null;
      if (state.view) renderLayers(state.view);
    });
    const hasLabels = Boolean(features && features.items.some((item) => item.label));
    function featureName(item) {
      return "feature " + item.id;
    }
    function featureRow(item, index, cells) {
      const tr = el("tr", "tlx-feature-row");
      tr.dataset.featureIndex = String(index);
      if (index === state.feature) tr.classList.add("tlx-selected");
      const pick = el("button", "tlx-feature", featureName(item));
      pick.type = "button";
      pick.dataset.feature = String(item.id);
      pick.setAttribute("aria-pressed", index === state.feature ? "true" : "false");
      const first = el("td");
      first.appendChild(pick);
      tr.appendChild(first);
      if (hasLabels) tr.appendChild(el("td", "tlx-feature-label", item.label || ""));
      cells.forEach((cell) => tr.appendChild(cell));
      return tr;
    }
    function featureHead(names) {
      const head = el("tr");
      ["feature"].concat(hasLabels ? ["label"] : [], names).forEach((h) => head.appendChild(el("th", "", h)));
      return head;
    }
    function renderFeatures() {
      featurePanel.textContent = "";
      const explained = features.position;
      featurePanel.appendChild(el("h3", "", "SAE features at " + features.hook + ", position " + explained + " (" + JSON.stringify(data.tokens[explained]) + ")"));
      const shown = features.items.length;
      const listed = shown < features.total ? "the " + shown + " of " + features.total + " features with the highest activation" : shown + " feature" + (shown === 1 ? "" : "s");
      featurePanel.appendChild(el("div", "tlx-note", "SAE " + features.sae.source + ": " + listed + ". Click a feature to colour the tokens by its token map ‖∂pre_f/∂x_t‖; then click a token to list the features it drives most."));
      if (!shown) {
        featurePanel.appendChild(el("div", "tlx-note tlx-none", "No feature fires at this position."));
        return;
      }
      const back = el("button", "tlx-back", "back to the scopes");
      back.type = "button";
      back.disabled = state.feature === null;
      featurePanel.appendChild(back);
      const table = el("table", "tlx-feature-table");
      table.appendChild(featureHead(["activation", "fires"]));
      features.items.forEach((item, index) => {
        table.appendChild(featureRow(item, index, [el("td", "tlx-num", fmt(item.activation)), el("td", "", item.fires ? "yes" : "no")]));
      });
      featurePanel.appendChild(table);
    }
    function renderDrivers() {
      driverPanel.textContent = "";
      const t = state.token;
      container.dataset.token = String(t);
      driverPanel.appendChild(el("h3", "", "features token " + t + " (" + JSON.stringify(data.tokens[t]) + ") drives most"));
      if (t > features.position) {
        driverPanel.appendChild(el("div", "tlx-note tlx-none", "It comes after position " + features.position + ", so it drives none of the features there."));
        return;
      }
      const ranked = features.items
        .map((item, index) => ({ item: item, index: index, score: t < item.row.length ? item.row[t] : null }))
        .filter((entry) => entry.score !== null && entry.score > 0);
      ranked.sort((a, b) => b.score - a.score || a.index - b.index);
      if (state.masked.has(t)) driverPanel.appendChild(el("div", "tlx-note", "This token is masked in the colours (a sink)."));
      if (!ranked.length) {
        driverPanel.appendChild(el("div", "tlx-note tlx-none", "It drives none of the listed features."));
        return;
      }
      const table = el("table", "tlx-driver-table");
      table.appendChild(featureHead(["score", "activation", "fires"]));
      for (const entry of ranked.slice(0, DRIVERS_SHOWN)) {
        const item = entry.item;
        table.appendChild(featureRow(item, entry.index, [el("td", "tlx-num tlx-driver-score", fmt(entry.score)), el("td", "tlx-num", fmt(item.activation)), el("td", "", item.fires ? "yes" : "no")]));
      }
      driverPanel.appendChild(table);
    }
    function pickFeature(index) {
      // Clicking the feature that colours the tokens again gives the colours back to the scope.
      state.feature = index === state.feature ? null : index;
      render();
    }
    function pickToken(position) {
      state.token = position;
      render();
    }

    function reveal(position) {
      // Keep the explained token in sight inside the scrolling token box.
      const span = spans[position];
      if (tokens.scrollHeight <= tokens.clientHeight) return;
      const top = span.offsetTop, bottom = top + span.offsetHeight;
      if (top < tokens.scrollTop || bottom > tokens.scrollTop + tokens.clientHeight) {
        tokens.scrollTop = Math.max(0, top - tokens.clientHeight / 2);
      }
    }
    function render() {
      const view = current();
      const moved = !state.view || state.view.position !== view.position;
      state.view = view;
      container.dataset.position = String(view.position);
      container.dataset.scope = view.scope.name;
      container.dataset.mode = view.feature ? "feature" : "scope";
      if (view.feature) container.dataset.feature = String(view.feature.id);
      else delete container.dataset.feature;
      const target = view.scope.targets ? view.scope.targets[state.row] : null;
      const details = view.scope.details ? view.scope.details[state.row] || {} : {};
      let text = "Explaining the prediction after position " + view.position + " (" + JSON.stringify(data.tokens[view.position]) + ")";
      if (data.steps) {
        text += "; step " + state.row + " generated " + JSON.stringify(data.steps.generated[state.row]) + " (p " + fmt(data.steps.probs[state.row]) + ", entropy " + fmt(data.steps.entropy[state.row]) + " nats)";
      } else if (target !== null && target !== undefined) {
        text += "; target " + JSON.stringify(target);
      }
      if (details.beta_eff !== undefined) text += "; β_eff " + fmt(details.beta_eff);
      if (details.eigenvalues) text += "; Fisher λ " + details.eigenvalues.map(fmt).join(", ");
      status.textContent = text + ".";
      note.textContent = view.scope.note + ". Click a token with a solid border to explain its prediction" + (data.positions.length > 1 ? "; ← and → step through positions." : ".");
      if (view.feature) {
        const item = view.feature;
        status.textContent = "Feature " + item.id + (item.label ? " (" + item.label + ")" : "") + " at " + features.hook + ", position " + view.position + " (" + JSON.stringify(data.tokens[view.position]) + "): activation " + fmt(item.activation) + (item.fires ? ", fires" : ", silent (pre-activation " + fmt(item.pre_activation) + ")") + ".";
        note.textContent = "Colour: each token's ‖∂pre_f/∂x_t‖ for this feature. Click a token to list the features it drives most; click the feature again (or back to the scopes) to return.";
      }
      const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => css(colormap(state.cmap, t)));
      legendBar.style.background = "linear-gradient(to right, " + stops.join(", ") + ")";
      legendLow.textContent = state.scale === "log" ? fmt(view.low) : "0";
      legendHigh.textContent = fmt(view.peak);
      legendNote.textContent = (state.scale === "log" ? "log colour" : "linear colour") + "; masked tokens (struck through) are left out of the scale and the shares: " + (state.masked.size ? [...state.masked].sort((a, b) => a - b).join(", ") : "none");
      const colours = palette(state.cmap);
      const labels = view.source !== shown.source;
      shown.source = view.source;
      for (let t = 0; t < spans.length; t++) {
        const span = spans[t];
        const score = view.scores[t];
        if (labels) {
          const label = fmt(score);
          if (label !== shown.scores[t]) span.dataset.score = shown.scores[t] = label;
        }
        const after = t > view.position, masked = state.masked.has(t);
        const explained = t === view.position, picked = Boolean(view.feature) && t === state.token;
        const flags = (explained ? 1 : 0) | (picked ? 2 : 0) | (after ? 4 : 0) | (masked ? 8 : 0);
        if (flags !== shown.flags[t]) {
          shown.flags[t] = flags;
          span.classList.toggle("tlx-explained", explained);
          span.classList.toggle("tlx-picked", picked);
          span.classList.toggle("tlx-after", after);
          span.classList.toggle("tlx-masked", masked);
        }
        let fill = "", text = "";
        if (!after) {
          const index = shade(level(view, score));
          fill = colours.fill[index];
          text = colours.text[index];
        }
        if (fill !== shown.fill[t]) span.style.backgroundColor = shown.fill[t] = fill;
        if (text !== shown.ink[t]) span.style.color = shown.ink[t] = text;
      }
      if (state.hovered !== undefined) describe(view, state.hovered);
      renderBars(view);
      renderTop(view);
      renderSeries(view);
      renderLayers(view);
      if (features) {
        renderFeatures();
        renderDrivers();
      }
      if (moved) reveal(view.position);
    }

    function hover(position) {
      state.hovered = position;
      const view = state.view;
      describe(view, position);
      if (!hoverBox.checked) return;
      if (view.feature) {
        if (position !== state.token) pickToken(position);
      } else if (position !== view.position) {
        explain(position);
      }
    }
    function describe(view, position) {
      const share = view.total > 0 && view.live[position] ? (100 * view.scores[position]) / view.total : 0;
      hoverInfo.textContent = "position " + position + " " + JSON.stringify(data.tokens[position]) + ": score " + fmt(view.scores[position]) + (view.live[position] ? ", " + share.toFixed(1) + "% of the unmasked total" : state.masked.has(position) ? " (masked)" : " (after the explained position)");
    }
    tokens.addEventListener("click", (event) => {
      const span = event.target.closest(".tlx-token");
      if (!span) return;
      const position = Number(span.dataset.pos);
      if (maskBox.checked || event.altKey) {
        if (state.masked.has(position)) state.masked.delete(position);
        else state.masked.add(position);
        state.maskVersion += 1;
        render();
      } else if (state.feature !== null) {
        pickToken(position);  // the feature keeps the colours; the reverse view follows the token
      } else {
        if (features) state.token = position;
        if (rowOf.has(position)) explain(position);
        else if (features) render();
      }
    });
    featureBox.addEventListener("click", (event) => {
      if (event.target.closest(".tlx-back")) {
        state.feature = null;
        render();
        return;
      }
      const pick = event.target.closest(".tlx-feature");
      if (pick) pickFeature(Number(pick.closest("tr").dataset.featureIndex));
    });
    tokens.addEventListener("mouseover", (event) => {
      const span = event.target.closest(".tlx-token");
      if (span) hover(Number(span.dataset.pos));
    });
    container.tabIndex = 0;
    container.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      if (state.feature !== null) return;  // the arrows step through the scopes' positions
      const next = state.row + (event.key === "ArrowLeft" ? -1 : 1);
      if (next < 0 || next >= data.positions.length) return;
      state.row = next;
      render();
      event.preventDefault();
    });
    scopeSelect.addEventListener("change", () => { state.scope = Number(scopeSelect.value); state.feature = null; render(); });
    scaleSelect.addEventListener("change", () => { state.scale = scaleSelect.value; render(); });
    cmapSelect.addEventListener("change", () => { state.cmap = cmapSelect.value; render(); });
    unmask.addEventListener("click", () => { state.masked.clear(); state.maskVersion += 1; render(); });
    render();
    return { explain: explain, render: render, state: state };
  }

  function mountAll() {
    document.querySelectorAll("script.tlx-data").forEach((script) => {
      const container = script.parentElement;
      if (container.dataset.mounted) return;
      const data = JSON.parse(script.textContent);
      container.removeChild(script);
      mount(container, data);
    });
  }
  window.TlscopesExplorer = { mount: mount, mountAll: mountAll };
  mountAll();
})();
