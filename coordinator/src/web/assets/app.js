// dreamfarm's web interface: keeps the pages current by polling
// /jobs.json every 2 s. Served from the binary; no build step. The pages
// work without it.
"use strict";
(function () {
  const POLL_MS = 2000;

  // Seconds as the server writes them ("3 min 20 s"); "—" when unknown.
  function duration(seconds) {
    if (!(seconds > 0)) return "—";
    const s = Math.round(seconds);
    const pad = (n) => String(n).padStart(2, "0");
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + pad(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + pad(Math.floor((s % 3600) / 60)) + " min";
  }

  function jobPath(id) {
    return "/jobs/" + encodeURIComponent(id);
  }

  // Sets the text of every `selector` inside `root`.
  function text(root, selector, value) {
    root.querySelectorAll(selector).forEach((el) => {
      if (el.textContent !== String(value)) el.textContent = value;
    });
  }

  // Brings one job's row (index) or header (job page) up to date.
  function showJob(root, job) {
    root.querySelectorAll(".state").forEach((el) => {
      el.textContent = job.state;
      el.className = "state state-" + job.state;
    });
    text(root, ".message", job.message);
    text(root, ".priority", job.priority);
    text(root, ".frames", job.frames_done + " / " + job.frames_total);
    text(root, ".fpm", job.frames_per_minute.toFixed(1));
    text(root, ".eta", duration(job.eta_seconds));
    root.querySelectorAll("progress").forEach((el) => {
      el.max = Math.max(job.frames_total, 1);
      el.value = job.frames_done;
    });
    root.querySelectorAll("img.thumb").forEach((img) => {
      if (job.frames_done === 0) return;
      // The frame count busts the cache: a new frame, a new URL.
      const src = jobPath(job.id) + "/latest.png?f=" + job.frames_done;
      if (img.getAttribute("src") !== src) img.src = src;
      img.classList.remove("pending");
    });
    root.querySelectorAll("form[data-states]").forEach((form) => {
      form.hidden = !form.dataset.states.split(" ").includes(job.state);
    });
  }

  // The job page's viewer: the latest frame, or any frame so far.
  function viewer() {
    const root = document.querySelector(".viewer");
    if (!root) return null;
    const base = root.dataset.base;
    const view = document.getElementById("view");
    const scrub = document.getElementById("scrub");
    const label = document.getElementById("frame-label");
    const follow = document.getElementById("follow");
    const play = document.getElementById("play");
    let frames = view.hidden ? 0 : Number(scrub.max) + 1;
    let playing = null;

    function show(n) {
      if (frames === 0) return;
      view.src = base + "/frames/" + n + ".png";
      view.hidden = false;
      const none = document.getElementById("no-frames");
      if (none) none.remove();
      scrub.value = n;
      label.textContent = "frame " + n + " of " + frames;
    }
    function stop() {
      clearInterval(playing);
      playing = null;
      play.textContent = "▶";
    }
    scrub.addEventListener("input", () => {
      stop();
      follow.checked = Number(scrub.value) === frames - 1;
      show(Number(scrub.value));
    });
    follow.addEventListener("change", () => {
      if (follow.checked) {
        stop();
        show(frames - 1);
      }
    });
    play.addEventListener("click", () => {
      if (playing) return stop();
      if (frames === 0) return;
      follow.checked = false;
      play.textContent = "⏸";
      let n = Number(scrub.value) >= frames - 1 ? 0 : Number(scrub.value);
      playing = setInterval(() => {
        show(n);
        n += 1;
        if (n >= frames) stop();
      }, 125);
    });
    if (frames > 0) label.textContent = "frame " + (frames - 1) + " of " + frames;
    return {
      id: root.dataset.job,
      update(job) {
        if (job.frames_done === frames) return;
        frames = job.frames_done;
        scrub.max = Math.max(frames - 1, 0);
        if (follow.checked && !playing) show(frames - 1);
        else label.textContent = "frame " + scrub.value + " of " + frames;
      },
    };
  }

  const view = viewer();

  async function poll() {
    let response;
    try {
      response = await fetch("/jobs.json", { headers: { Accept: "application/json" } });
    } catch (e) {
      return; // the coordinator may be restarting: next time
    }
    if (response.status === 401) {
      location.reload(); // the session ended: show the login form
      return;
    }
    if (!response.ok) return;
    const live = await response.json();
    const byId = new Map(live.jobs.map((job) => [job.id, job]));
    document.querySelectorAll("[data-job]").forEach((el) => {
      const job = byId.get(el.dataset.job);
      if (job && !el.classList.contains("viewer")) showJob(el, job);
    });
    if (view && byId.has(view.id)) view.update(byId.get(view.id));
    if (live.queued_tiles !== null) text(document, ".queued", live.queued_tiles);
    // A job submitted, deleted, or moved out of the newest finished ones
    // since the index was drawn: draw it again.
    const index = document.querySelector("table.jobs, p.no-jobs");
    const rows = document.querySelectorAll("tr[data-job]");
    const drawn = new Set(Array.from(rows, (row) => row.dataset.job));
    if (index && (rows.length !== byId.size || live.jobs.some((job) => !drawn.has(job.id)))) {
      location.reload();
    }
  }

  if (document.querySelector("[data-job], p.no-jobs")) setInterval(poll, POLL_MS);
})();
