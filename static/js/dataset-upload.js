/* Dataset uploads: thumbnails before upload, a progress bar per file and overall,
   three files in parallel, one file per request, and a retry for a file that failed in transit.
   Each photo is first resized in the browser when photo-resize.js can do so safely; the panel
   says how many bytes that saved.
   No inline code (strict CSP); the CSRF token comes from hx-headers on <body>. */
(function () {
  "use strict";

  var PARALLEL = 3;

  function csrfToken() {
    try {
      var headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      if (headers["X-CSRFToken"]) return headers["X-CSRFToken"];
    } catch (e) { /* fall back to the cookie */ }
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function humanSize(bytes) {
    if (bytes >= 1048576) return (bytes / 1048576).toFixed(1) + " MB";
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function init() {
    var form = document.getElementById("upload-form");
    if (!form || !window.FormData || !window.XMLHttpRequest) return;
    var input = document.getElementById("upload-input");
    var dropzone = document.getElementById("dropzone");
    var panel = document.getElementById("upload-panel");
    var list = document.getElementById("upload-list");
    var overall = document.getElementById("upload-overall");
    var percent = document.getElementById("upload-percent");
    var summary = document.getElementById("upload-summary");
    var bytesLine = document.getElementById("upload-bytes");
    var submit = document.getElementById("upload-submit");
    var url = form.getAttribute("action");
    var resize = window.FluxsitePhotoResize;
    var resizeOptions = resize ? resize.optionsFrom(form) : null;
    var items = [];
    var running = 0;
    var refreshTimer = null;

    if (submit) submit.classList.add("hidden"); // files start uploading as soon as they are chosen

    function refreshGrid() {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(function () {
        document.body.dispatchEvent(new CustomEvent("dataset-changed", { bubbles: true }));
      }, 250);
    }

    function updateOverall() {
      var total = 0, loaded = 0, done = 0, failed = 0, active = 0;
      items.forEach(function (item) {
        total += item.file.size;
        loaded += item.state === "done" || item.state === "refused" ? item.file.size : item.loaded;
        if (item.state === "done") done += 1;
        if (item.state === "refused" || item.state === "failed") failed += 1;
        if (item.state === "queued" || item.state === "uploading") active += 1;
      });
      var pct = total ? Math.round((loaded / total) * 100) : 0;
      overall.value = pct;
      percent.textContent = pct + "%";
      summary.textContent = active
        ? "Uploading " + items.length + " file" + (items.length === 1 ? "" : "s") + "…"
        : done + " added" + (failed ? ", " + failed + " not added" : "") + ".";
      panel.dataset.state = active ? "uploading" : "done";
      updateBytes();
    }

    // Counted over the files that reached the server: "Sent 6.4 MB instead of 207 MB".
    function updateBytes() {
      if (!bytesLine) return;
      var sent = 0, original = 0;
      items.forEach(function (item) {
        if (!item.prepared || (item.state !== "done" && item.state !== "refused")) return;
        sent += item.prepared.blob.size;
        original += item.file.size;
      });
      bytesLine.classList.toggle("hidden", !(sent < original));
      bytesLine.textContent = sent < original
        ? "Sent " + humanSize(sent) + " instead of " + humanSize(original) + ": photos are resized in your browser before upload."
        : "";
    }

    function setState(item, state, message) {
      item.state = state;
      item.row.dataset.state = state;
      item.status.textContent = message;
      item.retry.classList.toggle("hidden", state !== "failed");
      if (state === "done" || state === "refused") item.bar.value = 100;
      updateOverall();
    }

    function addFile(file) {
      var row = el("li", "upload-item");
      var preview = el("div", "upload-preview");
      if (/^image\/(jpeg|png|webp)$/.test(file.type)) {
        var img = el("img");
        img.alt = "";
        img.src = URL.createObjectURL(file);
        preview.appendChild(img);
      } else {
        preview.textContent = /\.zip$/i.test(file.name) ? "ZIP" : "IMG";
      }
      var body = el("div", "upload-body");
      var nameLine = el("div", "upload-name", file.name + " · " + humanSize(file.size));
      body.appendChild(nameLine);
      var bar = el("progress");
      bar.max = 100;
      bar.value = 0;
      body.appendChild(bar);
      var status = el("div", "upload-status small", "Waiting…");
      body.appendChild(status);
      var retry = el("button", "small ghost hidden", "Retry");
      retry.type = "button";
      body.appendChild(retry);
      row.appendChild(preview);
      row.appendChild(body);
      list.appendChild(row);
      var item = {
        file: file, row: row, nameLine: nameLine, bar: bar, status: status, retry: retry,
        loaded: 0, state: "queued", prepared: null
      };
      retry.addEventListener("click", function () {
        item.loaded = 0;
        bar.value = 0;
        setState(item, "queued", "Waiting…");
        pump();
      });
      items.push(item);
      row.dataset.state = "queued";
    }

    function describe(verdicts) {
      return verdicts.map(function (v) {
        var text = v.message;
        if (v.warnings && v.warnings.length) text += " " + v.warnings.join(" ");
        return verdicts.length > 1 ? v.name + ": " + text : text;
      }).join("\n");
    }

    // Resized once: a retry sends the same bytes again.
    function prepare(item) {
      if (item.prepared) return Promise.resolve(item.prepared);
      var keep = { blob: item.file, name: item.file.name, resized: false, reason: "no resizing script" };
      var pending = resize && resizeOptions ? resize.prepare(item.file, resizeOptions) : Promise.resolve(keep);
      return pending.catch(function () { return keep; }).then(function (prepared) {
        item.prepared = prepared;
        item.row.dataset.resized = prepared.resized ? "yes" : "no";
        item.row.dataset.keptBecause = prepared.reason; // why the original was sent, for tests and support
        if (prepared.resized) {
          item.nameLine.textContent = item.file.name + " · " + humanSize(item.file.size) + " → " + humanSize(prepared.blob.size);
        }
        return prepared;
      });
    }

    function upload(item) {
      running += 1;
      setState(item, "uploading", item.prepared ? "Uploading…" : "Preparing…");
      prepare(item).then(function (prepared) {
        item.status.textContent = "Uploading…";
        send(item, prepared);
      });
    }

    function send(item, prepared) {
      var data = new FormData();
      data.append("files", prepared.blob, prepared.name);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (event) {
        if (!event.lengthComputable) return;
        item.loaded = Math.min(item.file.size, item.file.size * (event.loaded / event.total));
        item.bar.value = Math.round((event.loaded / event.total) * 95); // the last 5%: server work
        updateOverall();
      });
      xhr.addEventListener("load", function () {
        var payload = null;
        try { payload = JSON.parse(xhr.responseText); } catch (e) { payload = null; }
        if (payload && payload.files && payload.files.length) {
          var anyOk = payload.files.some(function (v) { return v.ok; });
          var allOk = payload.files.every(function (v) { return v.ok; });
          setState(item, anyOk ? "done" : "refused", describe(payload.files));
          if (!allOk && anyOk) item.row.dataset.state = "partial";
          if (anyOk) refreshGrid();
        } else if (payload && payload.error) {
          setState(item, xhr.status >= 500 ? "failed" : "refused", payload.error);
        } else {
          setState(item, "failed", "The server could not take this file (" + xhr.status + "). Try again.");
        }
        finish();
      });
      xhr.addEventListener("error", function () {
        setState(item, "failed", "The connection dropped. Try again.");
        finish();
      });
      xhr.addEventListener("abort", function () {
        setState(item, "failed", "The upload was interrupted. Try again.");
        finish();
      });
      xhr.send(data);
    }

    function finish() {
      running -= 1;
      pump();
    }

    function pump() {
      items.forEach(function (item) {
        if (running < PARALLEL && item.state === "queued") upload(item);
      });
      updateOverall();
    }

    function accept(fileList) {
      if (!fileList || !fileList.length) return;
      panel.classList.remove("hidden");
      Array.prototype.forEach.call(fileList, addFile);
      pump();
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      accept(input.files);
      input.value = "";
    });
    input.addEventListener("change", function () {
      accept(input.files);
      input.value = "";
    });
    ["dragenter", "dragover"].forEach(function (name) {
      dropzone.addEventListener(name, function (event) {
        event.preventDefault();
        dropzone.classList.add("dragover");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      dropzone.addEventListener(name, function (event) {
        event.preventDefault();
        dropzone.classList.remove("dragover");
      });
    });
    dropzone.addEventListener("drop", function (event) {
      if (event.dataTransfer) accept(event.dataTransfer.files);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
