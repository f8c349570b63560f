// The inpainting mask tool on the generate page: paint over the image to start from, with a brush
// size, an eraser and a clear button; mouse, pen and touch alike (pointer events). The drawing
// canvas has the image's own pixel size; on submit its strokes become the mask PNG the predictor
// reads (replicate/flux-fine-tuner predict.py: "Black areas will be preserved, white areas will be
// inpainted"): white where painted, black elsewhere, written into the form's mask file input.
// A static file, not an inline script, so the strict CSP holds.
(function () {
  "use strict";

  function setup(form) {
    var tool = form.querySelector("[data-mask-tool]");
    if (!tool || tool.dataset.ready) return;
    tool.dataset.ready = "1";
    var image = tool.querySelector("[data-mask-image]");
    var canvas = tool.querySelector("[data-mask-canvas]");
    var upload = form.querySelector('input[type="file"][name="input_image"]');
    var maskInput = form.querySelector("[data-mask-input]");
    var strength = form.querySelector('input[name="prompt_strength"]');
    var output = form.querySelector("[data-strength-output]");
    var brush = tool.querySelector("[data-mask-brush]");
    var dirty = false;
    var drawing = null;

    if (strength && output) {
      strength.addEventListener("input", function () { output.textContent = strength.value; });
    }
    if (upload) {
      upload.addEventListener("change", function () {
        var file = upload.files && upload.files[0];
        if (!file) return;
        image.removeAttribute("width");
        image.removeAttribute("height");
        image.src = URL.createObjectURL(file);
        tool.hidden = false;
        clear();
      });
    }
    if (!canvas) return;
    var ctx = canvas.getContext("2d");

    function fit() {
      if (!image.naturalWidth) return;
      if (canvas.width !== image.naturalWidth || canvas.height !== image.naturalHeight) {
        canvas.width = image.naturalWidth;
        canvas.height = image.naturalHeight;
        dirty = false;
      }
    }
    image.addEventListener("load", fit);
    if (image.complete) fit();

    function clear() {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      dirty = false;
      if (maskInput) maskInput.value = "";
    }
    tool.querySelector("[data-mask-clear]").addEventListener("click", clear);

    function erasing() {
      var checked = tool.querySelector("[data-mask-mode]:checked");
      return checked && checked.value === "erase";
    }
    function point(event) {
      var box = canvas.getBoundingClientRect();
      return {
        x: (event.clientX - box.left) * (canvas.width / box.width),
        y: (event.clientY - box.top) * (canvas.height / box.height),
        scale: canvas.width / box.width,
      };
    }
    function stroke(from, to) {
      ctx.globalCompositeOperation = erasing() ? "destination-out" : "source-over";
      ctx.strokeStyle = "#fff";
      ctx.fillStyle = "#fff";
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.lineWidth = Number(brush.value) * to.scale;
      ctx.beginPath();
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x + 0.01, to.y);
      ctx.stroke();
      if (!erasing()) dirty = true;
    }
    canvas.addEventListener("pointerdown", function (event) {
      fit();
      try {
        canvas.setPointerCapture(event.pointerId);  // keep the stroke when the finger leaves the canvas
      } catch (ignored) {
        // a pointer the browser does not track (a synthetic event): draw without the capture
      }
      drawing = point(event);
      stroke(drawing, drawing);
      event.preventDefault();
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) return;
      var next = point(event);
      stroke(drawing, next);
      drawing = next;
      event.preventDefault();
    });
    function stop() { drawing = null; }
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);

    // The mask PNG: black where nothing was painted, the strokes in white, at the image's size.
    function maskBlob(done) {
      var out = document.createElement("canvas");
      out.width = canvas.width;
      out.height = canvas.height;
      var octx = out.getContext("2d");
      octx.fillStyle = "#000";
      octx.fillRect(0, 0, out.width, out.height);
      octx.drawImage(canvas, 0, 0);
      out.toBlob(done, "image/png");
    }
    form.addEventListener("submit", function (event) {
      if (!dirty || !maskInput || form.dataset.maskWritten) return;
      event.preventDefault();
      maskBlob(function (blob) {
        var files = new DataTransfer();
        files.items.add(new File([blob], "mask.png", { type: "image/png" }));
        maskInput.files = files.files;
        form.dataset.maskWritten = "1";
        if (form.requestSubmit) form.requestSubmit(event.submitter || undefined);
        else form.submit();
      });
    });
  }

  function all() {
    var form = document.getElementById("generate-form");
    if (form) setup(form);
  }
  document.addEventListener("DOMContentLoaded", all);
  document.addEventListener("htmx:afterSettle", all);  // the model picker swaps the whole form
  all();
})();
