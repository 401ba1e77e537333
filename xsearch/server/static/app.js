// xsearch's page: search by text, by a dropped file or by a result ("more like this").
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

  const KINDS = ["audio", "image", "video"];
  const MOMENTS = 6; // a file's matching moments asked for, when results are files
  const EXTENSION_KIND = {};
  for (const e of "wav flac mp3 ogg oga opus m4a aac wma aiff aif".split(" ")) EXTENSION_KIND[e] = "audio";
  for (const e of "jpg jpeg png webp bmp gif tif tiff".split(" ")) EXTENSION_KIND[e] = "image";
  for (const e of "mp4 m4v mov mkv webm avi mpg mpeg".split(" ")) EXTENSION_KIND[e] = "video";

  let queryFile = null;
  let latest = 0; // only the newest search's answer is shown

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
      document.body.dataset.ready = "true";
      if (location.search) searchFromAddress(); // a bookmarked or shared search
    } catch (e) {
      showError(e.message);
    }
  }

  // The index says what it can return (its model's modalities, videos, everything).
  function showTargets(targets) {
    const chosen = target.value;
    target.replaceChildren(
      ...targets.map((t) => el("option", { value: t.value }, t.label)),
    );
    const values = targets.map((t) => t.value);
    target.value = values.includes(chosen) ? chosen : values[0];
  }

  function fileKind(file) {
    const major = (file.type || "").split("/")[0];
    if (KINDS.includes(major)) return major;
    const ext = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
    return EXTENSION_KIND[ext] || null;
  }

  function queryParams(extra, withText) {
    const p = new URLSearchParams();
    const text = q.value.trim();
    if (withText && text) p.append("text", text);
    p.set("target", target.value);
    p.set("k", k.value || "12");
    if (where.value.trim()) p.set("where", where.value.trim());
    if (minScore.value.trim()) p.set("min_score", minScore.value.trim());
    // results that are files (videos, everything) come with their other matching moments
    if (target.value === "video" || target.value === "all") p.set("per_file", String(MOMENTS));
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
    where.value = p.get("where") || "";
    minScore.value = p.get("min_score") || "";
    if (where.value || minScore.value) document.querySelector(".filters").open = true;
    const like = p.get("like");
    return like && /^\d+$/.test(like) ? { item_id: like, name: `item ${like}` } : null;
  }

  function searchFromAddress() {
    const like = fromAddress();
    if (like || q.value.trim()) search(like, false);
    else {
      results.replaceChildren();
      summary.textContent = "";
      hideError();
    }
  }

  window.addEventListener("popstate", searchFromAddress);

  async function search(like, record = true) {
    const p = queryParams(like ? { like: like.item_id, exclude_self: "1" } : {}, !like);
    let url = `/api/search?${p}`;
    let options = { headers: { Accept: "application/json" } };
    let what = like ? `like ${like.name}` : "";
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
    } else if (record) {
      remember(p);
    }
    const mine = ++latest;
    hideError();
    results.setAttribute("aria-busy", "true");
    summary.textContent = "Searching…";
    try {
      const data = await fetchJSON(url, options);
      if (mine !== latest) return;
      render(data.hits);
      const n = results.children.length; // files with their moments count once
      summary.textContent =
        `${n} result${n === 1 ? "" : "s"} in ${target.selectedOptions[0].textContent}` +
        (what ? ` ${what}` : "") + ` (${data.took_ms} ms)`;
    } catch (e) {
      if (mine !== latest) return;
      results.replaceChildren();
      summary.textContent = "";
      showError(e.message);
    } finally {
      if (mine === latest) results.removeAttribute("aria-busy");
    }
  }

  // --- results --------------------------------------------------------------------------------

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

  function span(hit) {
    if (hit.start === null || hit.start === undefined) return "";
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

  // A player that starts at the hit's time and, for a window, stops at its end once.
  function player(hit) {
    const tag = hit.kind === "video" ? "video" : "audio";
    const start = hit.start || 0;
    const end = hit.modality !== "image" && hit.end > start ? hit.end : null;
    // A media fragment (#t=start,end) makes the native controls start there, and stop at the
    // end of a window; the handlers below do the same where fragments are not supported.
    const fragment = `#t=${+start.toFixed(3)}${end !== null ? `,${+end.toFixed(3)}` : ""}`;
    const media = el(tag, {
      controls: true,
      preload: tag === "video" ? "none" : "metadata", // a video shows its matched frame as poster
      src: hit.media_url + fragment,
      poster: tag === "video" ? hit.thumb_url : null,
      "aria-label": `${tag === "video" ? "Video" : "Audio"}: ${hit.name}`,
    });
    let stopAtEnd = end !== null;
    media.addEventListener("loadedmetadata", () => {
      if (start > 0 && Math.abs(media.currentTime - start) > 0.25) media.currentTime = start;
    });
    media.addEventListener("timeupdate", () => {
      if (stopAtEnd && media.currentTime >= end) {
        stopAtEnd = false;
        media.pause();
      }
    });
    const play = el("button", { type: "button", class: "play" }, `▶ Play ${span(hit) || "from the start"}`);
    play.addEventListener("click", () => {
      for (const other of results.querySelectorAll("audio, video")) if (other !== media) other.pause();
      stopAtEnd = end !== null;
      media.currentTime = start;
      media.play().catch((e) => showError(`cannot play ${hit.name}: ${e.message}`));
    });
    return [media, play];
  }

  function thumbnail(hit) {
    if (!hit.thumb_url || hit.kind === "video") return null;
    const what = hit.kind === "audio" ? `Waveform of ${hit.name}` : hit.name;
    const img = el("img", { src: hit.thumb_url, alt: `${what}${span(hit) ? `, ${span(hit)}` : ""}`, loading: "lazy" });
    img.addEventListener("error", () => img.replaceWith(el("div", { class: "no-preview" }, "no preview")));
    if (hit.kind === "image") {
      return el("a", { href: hit.media_url, target: "_blank", rel: "noopener", class: "thumb" }, img);
    }
    return el("div", { class: "thumb" }, img);
  }

  // The file's matching moments on a bar as long as the file: each plays from its time.
  function timeline(hit, moments, media) {
    const length = hit.duration || Math.max(...moments.map((m) => m.end || m.start || 0)) || 1;
    const bar = el("div", { class: "timeline", role: "group", "aria-label": `Moments of ${hit.name}`, hidden: true });
    moments.forEach((moment, i) => {
      const at = moment.start || 0;
      const mark = el("button", {
        type: "button",
        class: i === 0 ? "moment best" : "moment",
        "data-start": at,
        title: `${moment.modality} · ${span(moment)} · score ${Number(moment.score).toFixed(3)}`,
        "aria-label": `Play ${moment.modality} ${span(moment)}, score ${Number(moment.score).toFixed(2)}`,
      });
      mark.style.left = `${Math.min(100, (100 * at) / length)}%`; // CSSOM: allowed by the page's CSP
      mark.addEventListener("click", () => {
        for (const other of results.querySelectorAll("audio, video")) if (other !== media) other.pause();
        media.currentTime = at;
        media.play().catch((e) => showError(`cannot play ${hit.name}: ${e.message}`));
      });
      bar.append(mark);
    });
    const toggle = el("button", { type: "button", class: "moments", "aria-expanded": "false" }, `${moments.length} moments`);
    toggle.addEventListener("click", () => {
      bar.hidden = !bar.hidden;
      toggle.setAttribute("aria-expanded", String(!bar.hidden));
    });
    return [bar, toggle];
  }

  function card(hit, moments = [hit]) {
    const li = el("li", {
      class: "card",
      "data-item-id": hit.item_id,
      "data-kind": hit.kind,
      "data-modality": hit.modality,
      "data-start": hit.start,
      "data-end": hit.end,
    });
    const thumb = thumbnail(hit);
    if (thumb) li.append(thumb);
    let media = null;
    let play = null;
    if (hit.kind === "audio" || hit.kind === "video") [media, play] = player(hit);
    if (media) li.append(media);
    let bar = null;
    let toggle = null;
    if (media && moments.length > 1) [bar, toggle] = timeline(hit, moments, media);
    if (bar) li.append(bar);
    if (hit.modality === "text" && hit.text) li.append(el("blockquote", { class: "text" }, hit.text));
    if (!thumb && !media && !(hit.modality === "text" && hit.text)) li.append(el("div", { class: "no-preview" }, "no preview"));

    const labels = el("ul", { class: "labels", "aria-label": "Labels" });
    for (const label of hit.labels || []) labels.append(el("li", {}, label));
    const score = el("span", {
      class: "score",
      title: hit.cosine !== undefined ? `cosine ${Number(hit.cosine).toFixed(4)}` : null,
    }, `score ${Number(hit.score).toFixed(3)}`);
    const when = span(hit);
    li.append(
      el("h2", { class: "name", title: hit.path }, el("span", { class: "rank" }, `${hit.rank}.`), " ", hit.name),
      el(
        "p",
        { class: "where" },
        el("span", {}, `${hit.modality}${hit.kind && hit.kind !== hit.modality ? ` of ${hit.kind}` : ""}${when ? ` · ${when}` : ""}`),
        score,
      ),
      labels,
    );
    const more = el("button", { type: "button", class: "like" }, "More like this");
    more.addEventListener("click", () => search(hit));
    li.append(el("div", { class: "actions" }, play, toggle, more));
    return li;
  }

  // A file's moments share its rank (targets video and all): one card each, with a timeline.
  function render(hits) {
    const files = [];
    for (const hit of hits) {
      const last = files[files.length - 1];
      if (last && last[0].asset_id === hit.asset_id && last[0].rank === hit.rank) last.push(hit);
      else files.push([hit]);
    }
    results.replaceChildren(...files.map((moments) => card(moments[0], moments)));
  }

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
