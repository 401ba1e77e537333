// xsearch's page: search by text, by a dropped file or by a result ("more like this"); one
// card per file with its best moment; a detail view of each result.
// Plain JavaScript, no build step; every value from the server goes in through textContent.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const q = $("q");
  const target = $("target");
  const k = $("k");
  const where = $("where");
  const minScore = $("min-score");
  const drop = $("drop");
  const fileInput = $("file");
  const results = $("results");
  const errorBox = $("error");
  const summary = $("summary");
  const detail = $("detail");

  const KINDS = ["audio", "image", "video"];
  const MOMENTS = 6; // a file's matching moments asked for with it
  const WAVE_SECONDS = 60; // the longest span the detail view draws of a sound
  const EXTENSION_KIND = {};
  for (const e of "wav flac mp3 ogg oga opus m4a aac wma aiff aif".split(" ")) EXTENSION_KIND[e] = "audio";
  for (const e of "jpg jpeg png webp bmp gif tif tiff".split(" ")) EXTENSION_KIND[e] = "image";
  for (const e of "mp4 m4v mov mkv webm avi mpg mpeg".split(" ")) EXTENSION_KIND[e] = "video";
  // Filters kept in the address, by their input's id: [parameter, element]
  const FIELDS = [
    ["min_duration", $("min-duration")],
    ["max_duration", $("max-duration")],
    ["after", $("after")],
    ["before", $("before")],
    ["folder", $("folder")],
    ["min_score", minScore],
    ["where", where],
  ];

  let queryFile = null;
  let previewURL = null;
  let latest = 0; // only the newest search's answer is shown
  let files = []; // the results shown: each a file's moments, best first
  let open = -1; // the file shown in the detail view

  // --- talking to the API -------------------------------------------------------------------

  async function fetchJSON(url, options) {
    const response = await fetch(url, options);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      throw new Error((body && body.error) || `HTTP ${response.status}`);
    }
    return body;
  }

  async function loadStatus() {
    try {
      const s = await fetchJSON("/api/status");
      const counts = Object.entries(s.items).map(([m, n]) => `${n} ${m}`).join(", ");
      $("index-info").textContent =
        `index ${s.index} · generation ${s.generation} · ${counts} items`;
      $("random-banner").hidden = !s.model.random_weights;
      showTargets(s.targets);
      showFacets(s.facets);
      document.body.dataset.ready = "true";
      if (location.search) searchFromAddress(); // a bookmarked or shared search
    } catch (e) {
      showError(e.message);
    }
  }

  // The index says what it can return (its model's modalities, videos, everything).
  function showTargets(targets) {
    const chosen = target.value;
    target.replaceChildren(...targets.map((t) => el("option", { value: t.value }, t.label)));
    const values = targets.map((t) => t.value);
    target.value = values.includes(chosen) ? chosen : values[0];
  }

  // ... and what it holds to filter by: kinds, folders and labels, with their counts.
  function showFacets(facets) {
    const choice = (name, value, text) =>
      el("label", { class: "choice" }, el("input", { type: "checkbox", name, value }), ` ${text}`);
    $("kinds").replaceChildren(
      el("legend", {}, "Kind"),
      ...Object.entries(facets.kinds).map(([kind, n]) => choice("kind", kind, `${kind} (${n})`)),
    );
    $("folder").replaceChildren(
      el("option", { value: "" }, "anywhere"),
      ...facets.folders.map(([folder, n]) => el("option", { value: folder }, `${folder} (${n})`)),
    );
    $("labels").hidden = facets.labels.length === 0;
    $("labels").replaceChildren(
      el("legend", {}, "Labels"),
      ...facets.labels.slice(0, 30).map(([label, n]) => choice("label", label, `${label} (${n})`)),
    );
    if (facets.modified) {
      for (const id of ["after", "before"]) {
        $(id).min = day(facets.modified[0]);
        $(id).max = day(facets.modified[1]);
      }
    }
  }

  const day = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 10);

  function fileKind(file) {
    const major = (file.type || "").split("/")[0];
    if (KINDS.includes(major)) return major;
    const ext = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
    return EXTENSION_KIND[ext] || null;
  }

  function checked(name) {
    return [...document.querySelectorAll(`input[name='${name}']:checked`)].map((i) => i.value);
  }

  function queryParams(extra, withText) {
    const p = new URLSearchParams();
    const text = q.value.trim();
    if (withText && text) p.append("text", text);
    p.set("target", target.value);
    p.set("k", k.value || "12");
    for (const kind of checked("kind")) p.append("kind", kind);
    for (const label of checked("label")) p.append("label", label);
    for (const [name, input] of FIELDS) if (input.value.trim()) p.set(name, input.value.trim());
    for (const [key, value] of Object.entries(extra || {})) p.set(key, value);
    return p;
  }

  // The search is in the address (text, target, k, filters, or the item liked), so that it can
  // be bookmarked, shared and reloaded, and Back returns to the previous one. A query file
  // cannot be: such a search leaves the address as it is.
  function remember(p) {
    const address = `?${p}`;
    if (location.search !== address) history.pushState(null, "", address);
  }

  function fromAddress() {
    const p = new URLSearchParams(location.search);
    q.value = p.getAll("text").join(" ");
    if (p.get("target") && [...target.options].some((o) => o.value === p.get("target"))) {
      target.value = p.get("target");
    }
    k.value = p.get("k") || "12";
    for (const [name, input] of FIELDS) input.value = p.get(name) || "";
    for (const name of ["kind", "label"]) {
      const wanted = p.getAll(name);
      for (const box of document.querySelectorAll(`input[name='${name}']`)) box.checked = wanted.includes(box.value);
    }
    showFilterCount();
    if (where.value) $("advanced").open = true;
    const like = p.get("like");
    return like && /^\d+$/.test(like) ? { item_id: like, name: `item ${like}` } : null;
  }

  function showFilterCount() {
    const n = checked("kind").length + checked("label").length + FIELDS.filter(([, i]) => i.value.trim()).length;
    $("filter-count").textContent = n ? `· ${n} on` : "";
    if (n) $("filters").open = true;
  }

  function searchFromAddress() {
    const like = fromAddress();
    if (like || q.value.trim()) search(like, false);
    else {
      results.replaceChildren();
      files = [];
      summary.textContent = "";
      hideError();
    }
  }

  window.addEventListener("popstate", () => {
    if (detail.open) detail.close();
    searchFromAddress();
  });

  async function search(like, record = true) {
    // results are files, each with its other matching moments
    const asked = { by_file: "1", per_file: String(MOMENTS) };
    const p = queryParams(like ? { ...asked, like: like.item_id, exclude_self: "1" } : asked, !like);
    let url = `/api/search?${p}`;
    let options = { headers: { Accept: "application/json" } };
    let what = like ? `like ${like.name}${like.what ? ` (${like.what})` : ""}` : "";
    if (queryFile && !like) {
      const kind = fileKind(queryFile);
      if (!kind) {
        showError(`${queryFile.name}: not an audio, image or video file`);
        return;
      }
      p.set("as", kind);
      url = `/api/search?${p}`;
      options = {
        method: "POST",
        body: queryFile,
        headers: { Accept: "application/json", "Content-Type": queryFile.type || "application/octet-stream" },
      };
      what = `with ${queryFile.name}` + (p.has("text") ? " and the text" : "");
    } else if (!p.has("text") && !p.has("like")) {
      showError("Type a query, drop a file, or choose “more like this” on a result.");
      return;
    }
    if (record && !(queryFile && !like)) {
      const kept = new URLSearchParams(p);
      kept.delete("by_file");
      kept.delete("per_file");
      kept.delete("exclude_self");
      remember(kept);
    }
    showFilterCount();
    const mine = ++latest;
    hideError();
    results.setAttribute("aria-busy", "true");
    summary.textContent = "Searching…";
    try {
      const data = await fetchJSON(url, options);
      if (mine !== latest) return;
      render(data.hits);
      const n = files.length;
      const took = ` (${data.took_ms} ms)`;
      const place = `in ${target.selectedOptions[0].textContent}${what ? ` ${what}` : ""}`;
      summary.textContent = n
        ? `${n} result${n === 1 ? "" : "s"} ${place}${took}`
        : `No results ${place}${data.empty_because ? `: ${data.empty_because}` : ""}.${took}`;
    } catch (e) {
      if (mine !== latest) return;
      results.replaceChildren();
      files = [];
      summary.textContent = "";
      showError(e.message);
    } finally {
      if (mine === latest) results.removeAttribute("aria-busy");
    }
  }

  // --- describing a hit -----------------------------------------------------------------------

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  const seconds = (t) => `${Number(t).toFixed(1)} s`;
  const hasTime = (hit) => hit.start !== null && hit.start !== undefined;

  function span(hit) {
    if (!hasTime(hit)) return "";
    if (hit.modality === "image") {
      // a frame over time stands for the seconds until the next frame; a central frame, its own
      if (hit.end > hit.start) return `frame ${Number(hit.start).toFixed(1)}–${seconds(hit.end)}`;
      return `frame at ${seconds(hit.start)}`;
    }
    if (hit.end !== null && hit.end !== undefined && hit.end > hit.start) {
      return `${Number(hit.start).toFixed(1)}–${seconds(hit.end)}`;
    }
    return `at ${seconds(hit.start)}`;
  }

  // What "more like this" searches with: the very item of the file that matched.
  function moment(hit) {
    if (hit.modality === "text") return "the text";
    if (hit.modality === "image") return hit.kind === "video" ? `the ${span(hit)}` : "the picture";
    return hasTime(hit) ? `the sound ${span(hit)}` : "the sound";
  }

  function describe(hit) {
    const of = hit.kind && hit.kind !== hit.modality ? ` of ${hit.kind}` : "";
    return `${hit.modality}${of}${span(hit) ? ` · ${span(hit)}` : ""}`;
  }

  const score = (hit, word = "score ") =>
    el("span", { class: "score", title: hit.cosine !== undefined ? `cosine ${Number(hit.cosine).toFixed(4)}` : null },
      `${word}${Number(hit.score).toFixed(3)}`);

  // A moment of a file as its detail view lists it: "frame at 1.5 s", "sound 10.0–20.0 s".
  function momentLabel(hit) {
    if (hit.modality === "image") return span(hit) || "picture";
    if (hit.modality === "audio") return `sound ${span(hit)}`.trim();
    return hit.modality;
  }

  function megabytes(bytes) {
    if (bytes === null || bytes === undefined) return "";
    return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
  }

  function likeThis(hit, label) {
    const button = el("button", {
      type: "button",
      class: "like",
      title: `Search with ${moment(hit)} of ${hit.name}`,
      "aria-label": `More like ${moment(hit)} of ${hit.name}`,
    }, label);
    button.addEventListener("click", () => {
      if (detail.open) detail.close();
      search({ ...hit, what: moment(hit) });
    });
    return button;
  }

  // A picture of the hit that shows a placeholder until it has loaded, and says so if it fails.
  function picture(hit, alt) {
    const box = el("div", { class: "picture loading" });
    const img = el("img", { src: hit.thumb_url, alt, loading: "lazy", decoding: "async" });
    img.addEventListener("load", () => box.classList.remove("loading"));
    img.addEventListener("error", () => box.replaceWith(el("div", { class: "no-preview" }, "no preview")));
    box.append(img);
    return box;
  }

  function pauseAll(except) {
    for (const media of document.querySelectorAll("audio, video")) if (media !== except) media.pause();
  }

  // Plays a window of `media` from its start; stops once at its end.
  function playFrom(media, start, end) {
    pauseAll(media);
    media.dataset.stopAt = end !== null && end > start ? String(end) : "";
    const go = () => {
      media.currentTime = start;
      media.play().catch((e) => showError(`cannot play: ${e.message}`));
    };
    if (media.readyState >= 1) go();
    else {
      media.preload = "auto";
      media.addEventListener("loadedmetadata", go, { once: true });
      media.load();
    }
  }

  function stopAtEnd(media) {
    media.addEventListener("timeupdate", () => {
      const end = Number(media.dataset.stopAt);
      if (media.dataset.stopAt && media.currentTime >= end) {
        media.dataset.stopAt = "";
        media.pause();
      }
    });
    return media;
  }

  const windowEnd = (hit) => (hit.modality !== "image" && hit.end > (hit.start || 0) ? hit.end : null);

  // --- results: a card per file ----------------------------------------------------------------

  // A file's moments come together and share its rank (the server groups them).
  function render(hits) {
    files = [];
    for (const hit of hits) {
      const last = files[files.length - 1];
      if (last && last[0].asset_id === hit.asset_id && last[0].rank === hit.rank) last.push(hit);
      else files.push([hit]);
    }
    results.replaceChildren(...files.map((moments, i) => card(moments, i)));
  }

  // Tab stops: the file's name (opens it), a play button for sounds, "more like this".
  function card(moments, place) {
    const hit = moments[0];
    const li = el("li", {
      class: "card",
      "data-item-id": hit.item_id,
      "data-asset-id": hit.asset_id,
      "data-kind": hit.kind,
      "data-modality": hit.modality,
      "data-start": hit.start,
      "data-end": hit.end,
    });
    if (hit.modality === "text" && hit.text) li.append(el("blockquote", { class: "text" }, hit.text));
    else if (hit.thumb_url) li.append(picture(hit, `${hit.kind === "audio" ? "Waveform of " : ""}${hit.name}${span(hit) ? `, ${span(hit)}` : ""}`));
    else li.append(el("div", { class: "no-preview" }, "no preview"));

    const opener = el("button", { type: "button", class: "open", title: hit.path }, hit.name);
    opener.addEventListener("click", () => showDetail(place));
    li.append(
      el("h2", { class: "name" }, el("span", { class: "rank" }, `${hit.rank}.`), " ", opener),
      el("p", { class: "where" }, el("span", {}, describe(hit)), score(hit)),
    );
    if (moments.length > 1) li.append(el("p", { class: "more-moments muted" }, `${moments.length} moments`));
    if ((hit.labels || []).length) {
      li.append(el("ul", { class: "labels", "aria-label": "Labels" }, ...hit.labels.map((l) => el("li", {}, l))));
    }
    const actions = el("div", { class: "actions" });
    if (hit.kind === "audio") {
      const audio = stopAtEnd(el("audio", { preload: "none", src: hit.media_url }));
      const play = el("button", { type: "button", class: "play", "aria-label": `Play ${hit.name} ${span(hit)}` }, `▶ ${span(hit) || "Play"}`);
      play.addEventListener("click", () => {
        if (!audio.paused) audio.pause();
        else playFrom(audio, hit.start || 0, windowEnd(hit));
      });
      audio.addEventListener("play", () => { play.textContent = `❚❚ ${span(hit) || "Pause"}`; });
      audio.addEventListener("pause", () => { play.textContent = `▶ ${span(hit) || "Play"}`; });
      li.append(audio);
      actions.append(play);
    }
    actions.append(likeThis(hit, "More like this"));
    li.append(actions);
    return li;
  }

  // --- the detail view -------------------------------------------------------------------------

  function showDetail(place) {
    if (place < 0 || place >= files.length) return;
    pauseAll(null);
    open = place;
    const moments = files[place];
    const hit = moments[0];
    $("detail-title").textContent = hit.name;
    $("detail-place").textContent = `${place + 1} of ${files.length}`;
    $("prev").disabled = place === 0;
    $("next").disabled = place === files.length - 1;
    const body = $("detail-body");
    body.replaceChildren();
    const view = el("div", { class: "detail-media" });
    let media = null;
    if (hit.kind === "image") {
      view.append(el("img", { src: hit.media_url, alt: hit.name, class: "large" }));
    } else if (hit.kind === "video") {
      media = el("video", { controls: true, preload: "metadata", src: hit.media_url, poster: hit.thumb_url, "aria-label": `Video: ${hit.name}` });
    } else if (hit.kind === "audio") {
      media = el("audio", { controls: true, preload: "metadata", src: hit.media_url, "aria-label": `Audio: ${hit.name}` });
    } else if (hit.text) {
      view.append(el("blockquote", { class: "text" }, hit.text));
    }
    let wave = null;
    if (hit.kind === "audio" && hit.duration) {
      wave = waveView(hit);
      view.append(wave.box);
    }
    if (media) view.append(stopAtEnd(media));
    body.append(view);

    let current = hit;
    const play = media && hasTime(hit) ? el("button", { type: "button", class: "play" }, `▶ Play ${span(hit)}`) : null;
    const chosen = (m) => {
      current = m;
      if (wave) wave.mark(m);
      for (const b of body.querySelectorAll(".moment-list button")) b.setAttribute("aria-pressed", String(b.dataset.itemId === String(m.item_id)));
      like.replaceWith((like = likeThis(m, `More like ${moment(m)}`)));
      matched.textContent = describe(m);
      matchedScore.replaceWith((matchedScore = score(m, "")));
      if (play) play.textContent = `▶ Play ${span(m)}`;
    };
    if (media) {
      // starts where the best moment is, unplayed
      media.addEventListener("loadedmetadata", () => {
        if (hasTime(hit) && media.currentTime === 0) media.currentTime = hit.start;
      }, { once: true });
    }
    if (moments.length > 1) {
      const list = el("ol", { class: "moment-list", "aria-label": `Moments of ${hit.name}` });
      for (const m of moments) {
        const b = el("button", { type: "button", "data-item-id": m.item_id, "data-start": m.start, "aria-pressed": String(m === hit) },
          momentLabel(m), " · ", score(m, ""));
        b.addEventListener("click", () => {
          chosen(m);
          if (media && hasTime(m)) playFrom(media, m.start, windowEnd(m));
        });
        list.append(el("li", {}, b));
      }
      body.append(list);
    }
    let matched = el("dd", {}, describe(hit));
    let matchedScore = score(hit, "");
    const facts = el("dl", { class: "facts" });
    const fact = (name, ...value) => facts.append(el("dt", {}, name), el("dd", {}, ...value));
    facts.append(el("dt", {}, "Matched"), matched);
    fact("Score", matchedScore);
    fact("Kind", hit.kind || "");
    if (hit.duration) fact("Duration", seconds(hit.duration));
    if (hit.bytes) fact("Size", megabytes(hit.bytes));
    if (hit.modified) fact("Modified", new Date(hit.modified * 1000).toLocaleString());
    fact("Path", el("code", {}, hit.path));
    if ((hit.labels || []).length) fact("Labels", hit.labels.join(", "));
    body.append(facts);
    let like = likeThis(hit, `More like ${moment(hit)}`);
    const actions = el("div", { class: "actions" }, like);
    if (hit.kind !== "text") actions.append(el("a", { href: hit.media_url, target: "_blank", rel: "noopener" }, "Open the file"));
    if (play) {
      play.addEventListener("click", () => playFrom(media, current.start || 0, windowEnd(current)));
      actions.prepend(play);
    }
    body.append(actions);
    if (!detail.open) detail.showModal();
    $("close").focus();
  }

  // A picture of the sound around the matched window (the whole file up to a minute), with the
  // window marked; `mark(moment)` moves the mark.
  function waveView(hit) {
    const d = hit.duration;
    let from = 0;
    let to = d;
    if (d > WAVE_SECONDS) {
      const middle = ((hit.start || 0) + (hit.end || hit.start || 0)) / 2;
      from = Math.min(Math.max(0, middle - WAVE_SECONDS / 2), d - WAVE_SECONDS);
      to = from + WAVE_SECONDS;
    }
    const a = Math.round(from * 10) / 10;
    const b = Math.round(to * 10) / 10;
    const box = el("div", { class: "wave" });
    box.append(el("img", { src: `/wave/${hit.asset_id}?start=${a}&end=${b}`, alt: `Waveform of ${hit.name}, ${seconds(a)} to ${seconds(b)}` }));
    const marker = el("div", { class: "window", "aria-hidden": "true" });
    box.append(marker);
    const mark = (m) => {
      const start = Math.max(a, m.start || 0);
      const end = Math.min(b, m.end > start ? m.end : start + 0.2);
      marker.hidden = !hasTime(m) || end <= a || start >= b;
      marker.style.left = `${(100 * (start - a)) / (b - a)}%`; // CSSOM: allowed by the page's CSP
      marker.style.width = `${(100 * (end - start)) / (b - a)}%`;
    };
    mark(hit);
    return { box, mark };
  }

  detail.addEventListener("keydown", (event) => {
    const inPlayer = event.target instanceof HTMLMediaElement || event.target instanceof HTMLInputElement;
    if (inPlayer) return;
    if (event.key === "ArrowRight") showDetail(open + 1);
    else if (event.key === "ArrowLeft") showDetail(open - 1);
  });
  detail.addEventListener("close", () => {
    pauseAll(null);
    $("detail-body").replaceChildren(); // stops loading its media
    const back = results.children[open]?.querySelector("button.open");
    if (back) back.focus();
  });
  detail.addEventListener("click", (event) => {
    if (event.target === detail) detail.close(); // a click on the backdrop
  });
  $("prev").addEventListener("click", () => showDetail(open - 1));
  $("next").addEventListener("click", () => showDetail(open + 1));
  $("close").addEventListener("click", () => detail.close());

  // --- errors and the query file -------------------------------------------------------------

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function hideError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  function setFile(file) {
    queryFile = file || null;
    if (previewURL) URL.revokeObjectURL(previewURL);
    previewURL = null;
    const preview = $("query-preview");
    preview.replaceChildren();
    if (queryFile) {
      const kind = fileKind(queryFile);
      previewURL = URL.createObjectURL(queryFile);
      if (kind === "image") preview.append(el("img", { src: previewURL, alt: `Query: ${queryFile.name}` }));
      else if (kind === "audio" || kind === "video") {
        preview.append(el(kind, { src: previewURL, controls: true, preload: "metadata", "aria-label": `Query: ${queryFile.name}` }));
      }
    }
    $("query-file").hidden = !queryFile;
    $("query-file-name").textContent = queryFile ? queryFile.name : "";
    if (queryFile) search(null);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(null);
  });
  target.addEventListener("change", () => {
    if (q.value.trim() || queryFile) search(null);
  });
  $("clear-filters").addEventListener("click", () => {
    for (const [, input] of FIELDS) input.value = "";
    for (const box of document.querySelectorAll("input[name='kind'], input[name='label']")) box.checked = false;
    showFilterCount();
    if (q.value.trim() || queryFile) search(null);
  });
  fileInput.addEventListener("change", () => setFile(fileInput.files[0]));
  $("clear-file").addEventListener("click", () => {
    fileInput.value = "";
    setFile(null);
    q.focus();
  });
  drop.addEventListener("click", () => fileInput.click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      fileInput.click();
    }
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) setFile(event.dataTransfer.files[0]);
  });

  loadStatus();
})();
