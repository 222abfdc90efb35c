// Live progress of a report: polls the job's JSON and updates the bar, the text and the link.
// Plain script (the pages' CSP allows only same-origin scripts and no inline code).
(function () {
  "use strict";

  var POLL_MS = 700;
  var MAX_POLL_MS = 6 * 60 * 60 * 1000; // stop watching after six hours
  var MAX_FAILURES = 20; // in a row, e.g. the server restarting
  var REQUEST_MS = 15000; // a poll that gets no answer in this time is given up
  var MAX_WAIT_MS = 30000; // the longest pause between polls after failures

  function text(job) {
    var pct = Math.round(job.progress * 100);
    switch (job.state) {
      case "queued": return "Waiting for a free worker…";
      case "running": return "Rendering: " + job.done + " of " + job.total + " (" + pct + "%)";
      case "done": return "Done: " + job.total + " of " + job.total + " (100%) in " + job.seconds + " s";
      case "failed": return "Failed after " + job.done + " of " + job.total;
      default: return "Cancelled after " + job.done + " of " + job.total;
    }
  }

  function sizeText(bytes) {
    if (bytes === null || bytes === undefined) return "";
    if (bytes < 1024 * 1024) return " (" + Math.max(1, Math.round(bytes / 1024)) + " KiB)";
    return " (" + (bytes / 1024 / 1024).toFixed(1) + " MiB)";
  }

  function watch(box) {
    var url = box.dataset.url;
    var bar = document.getElementById("job-progress");
    var status = document.getElementById("job-status");
    var error = document.getElementById("job-error");
    var link = document.getElementById("job-result");
    var cancel = document.getElementById("job-cancel");
    var started = Date.now();
    var failures = 0;
    var timer = null;

    function active(state) { return state === "queued" || state === "running"; }

    function show(job) {
      bar.max = job.total;
      bar.value = job.done;
      bar.textContent = Math.round(job.progress * 100) + "%";
      status.textContent = text(job);
      box.dataset.state = job.state;
      error.hidden = !job.error;
      error.textContent = job.error || "";
      if (job.result_url) {
        link.href = job.result_url;
        link.textContent = "Download the " + job.output.toUpperCase() + sizeText(job.result_bytes);
      }
      link.hidden = job.state !== "done";
      cancel.hidden = !active(job.state);
    }

    // One poll at a time, each given up after REQUEST_MS; after a failure the next waits for
    // the server's Retry-After, or longer and longer, so a struggling server is not pressed.
    function schedule(wait) {
      if (Date.now() - started < MAX_POLL_MS) timer = setTimeout(poll, wait || POLL_MS);
    }

    function retryAfter(resp) {
      var seconds = resp ? parseInt(resp.headers.get("Retry-After"), 10) : NaN;
      var backoff = Math.min(MAX_WAIT_MS, POLL_MS * Math.pow(2, failures));
      return isNaN(seconds) ? backoff : Math.min(MAX_WAIT_MS, Math.max(seconds * 1000, backoff));
    }

    function failed(resp) {
      failures += 1;
      if (failures < MAX_FAILURES) schedule(retryAfter(resp));
      else status.textContent = "Lost contact with the server; reload the page to try again.";
    }

    function poll() {
      timer = null;
      var controller = typeof AbortController === "function" ? new AbortController() : null;
      var giveUp = controller ? setTimeout(function () { controller.abort(); }, REQUEST_MS) : null;
      fetch(url, {
        headers: { Accept: "application/json" },
        cache: "no-store",
        signal: controller ? controller.signal : undefined
      })
        .then(function (resp) {
          if (resp.status === 404) {
            status.textContent = "This report no longer exists; results are removed after a while.";
            cancel.hidden = true;
            return;
          }
          if (!resp.ok) return failed(resp);
          return resp.json().then(function (job) {
            failures = 0;
            show(job);
            if (active(job.state)) schedule();
          });
        })
        .catch(function () { failed(null); })
        .finally(function () { if (giveUp) clearTimeout(giveUp); });
    }

    cancel.addEventListener("click", function () {
      cancel.disabled = true;
      fetch(url, { method: "DELETE", headers: { Accept: "application/json" } })
        .then(function (resp) { return resp.ok ? resp.json() : null; })
        .then(function (job) { if (job) show(job); })
        .catch(function () { /* the next poll shows the state */ })
        .finally(function () { cancel.disabled = false; });
    });

    if (active(box.dataset.state)) poll();
  }

  var box = document.getElementById("job");
  if (box) watch(box);
})();
