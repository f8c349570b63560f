/* Photos resized in the browser before upload (issue 15): a 12 MP phone photo of 4 MB leaves as
   a 2048 px JPEG of well under 1 MB. The server still checks and prepares every file exactly as it
   does a full-size one; this only has to make sure that resizing never changes what it concludes.

   So a file is sent as it is whenever there is any doubt: the browser cannot decode it (HEIC in
   most browsers, damaged or truncated files: Chromium refuses those, so the server gives its own
   verdict), it is not a JPEG, PNG or WebP by its bytes (a GIF renamed .jpg), it is already within
   the target, the server would refuse it before decoding (file size, pixel count, shape), or it
   carries something the browser and Pillow read differently (below). Whatever is resized is sized
   so that the server's own resize lands on exactly the size a full-size upload gives.

   What the browser and Pillow were checked to read alike, in Debian's Chromium 156 (tests in
   tests/training/test_upload_resize_browser.py; bench/bench_resize_verdicts.py runs the public
   corpus of tests/corpus/ and generated edge cases through both paths):
   - EXIF orientation of a JPEG (all eight), and of a PNG's eXIf chunk: createImageBitmap with
     imageOrientation "from-image" turns the picture upright, as imaging.py does, and the JPEG the
     canvas writes has no EXIF, so the server does not turn it again. Chromium ignores EXIF in a
     WebP, which Pillow applies; Pillow reads an orientation from XMP when EXIF has none, and any
     integer type where Chromium wants a SHORT: those files are sent as they are. And the browser
     must have swapped the sides exactly when the EXIF says so.
   - Colour: drawing on the canvas converts through the embedded ICC profile to sRGB (Display P3
     and Adobe RGB JPEGs, a P3 PNG: ΔE 0.5 on average from the sRGB truth, where the server's own
     conversion is within 2), and a CMYK JPEG comes out as Pillow converts it. The canvas JPEG
     carries an sRGB profile, which the server converts from, to sRGB: no change.
   - Transparency: the canvas is filled white before drawing, as the server puts a PNG's
     transparent areas on white (resampling then compositing equals compositing then resampling).
   - Decoding more lenient than the server's: Chromium shows a GIF named .jpg, a progressive JPEG
     with only some of its scans and the first frame of an animated PNG or WebP, all of which the
     server refuses. So only baseline JPEGs whose first scan holds every component, and PNG and
     WebP files without animation chunks, are resized. Truncated files Chromium does not decode.
   No inline code (strict CSP); exposes window.FluxsitePhotoResize for dataset-upload.js. */
(function () {
  "use strict";

  var QUALITY = 0.92;
  // A baseline JPEG has one scan (or one per component); an EXIF thumbnail or a camera's MPF
  // previews add theirs. The server refuses a file with more than 64 (imaging.MAX_JPEG_SCANS)
  // unread; anything over this far lower bound is sent as it is for the server to judge.
  var MAX_SCANS = 8;
  // 2×1 px, EXIF orientation 6: a browser that applies it decodes a 1×2 picture.
  var ROTATED_PROBE = "/9j/4AAQSkZJRgABAQAAAQABAAD/4QAiRXhpZgAATU0AKgAAAAgAAQESAAMAAAABAAYAAAAAAAD/2wBDAFA3PEY8MlBGQUZaVVBfeMiCeG5uePWvuZHI////////////////////////////////////////////////////wAALCAABAAIBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/ACv/2Q==";
  var support = null;

  function ascii(bytes, at, text) {
    if (at + text.length > bytes.length) return false;
    for (var i = 0; i < text.length; i++) if (bytes[at + i] !== text.charCodeAt(i)) return false;
    return true;
  }

  function contains(bytes, start, end, text) {
    for (var i = start; i + text.length <= end; i++) if (ascii(bytes, i, text)) return true;
    return false;
  }

  function u16(bytes, at) { return (bytes[at] << 8) | bytes[at + 1]; }
  function u32(bytes, at) { return ((bytes[at] << 24) >>> 0) + ((bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]); }
  function le24(bytes, at) { return bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16); }

  /* The Orientation in the first IFD of the EXIF block at `at`: 0 when there is none, -1 when it is
     not one SHORT (Pillow reads any integer type, browsers only a SHORT: they would disagree). */
  function exifOrientation(bytes, at, end) {
    var little = ascii(bytes, at, "II");
    if (!little && !ascii(bytes, at, "MM")) return 0;
    function read(offset, size) {
      var value = 0;
      for (var i = 0; i < size; i++) value += bytes[at + offset + (little ? i : size - 1 - i)] * Math.pow(256, i);
      return value;
    }
    var ifd = read(4, 4);
    if (at + ifd + 2 > end) return 0;
    for (var n = read(ifd, 2), entry = ifd + 2; n > 0 && at + entry + 12 <= end; n--, entry += 12) {
      if (read(entry, 2) !== 0x0112) continue;
      return read(entry + 2, 2) === 3 && read(entry + 4, 4) === 1 ? read(entry + 8, 2) : -1;
    }
    return 0;
  }

  /* Each reader answers {width, height} (as stored, before any orientation) when the file is one
     the browser and the server decode alike, or a reason to send it as it is. */
  function readJpeg(bytes) {
    var pos = 2, frame = null, exif = null, xmpOrientation = false;
    while (pos + 4 <= bytes.length) {
      if (bytes[pos] !== 0xff) return "unusual JPEG structure";
      var marker = bytes[pos + 1];
      if (marker === 0xff) { pos += 1; continue; } // fill byte
      if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) { pos += 2; continue; }
      var length = u16(bytes, pos + 2);
      if (marker === 0xd9 || length < 2 || pos + 2 + length > bytes.length) return "unusual JPEG structure";
      var end = pos + 2 + length;
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        if (marker !== 0xc0 && marker !== 0xc1) return "not a baseline JPEG";
        frame = { height: u16(bytes, pos + 5), width: u16(bytes, pos + 7), components: bytes[pos + 9] };
      }
      if (marker === 0xe1 && ascii(bytes, pos + 4, "Exif\0\0")) {
        // Pillow joins every EXIF segment into one block, browsers read the first alone.
        if (exif !== null) return "several EXIF blocks";
        exif = exifOrientation(bytes, pos + 10, end);
      } else if (marker === 0xe1 && ascii(bytes, pos + 4, "http://ns.adobe.com/xap/1.0/")) {
        xmpOrientation = xmpOrientation || contains(bytes, pos + 4, end, "tiff:Orientation");
      }
      if (marker === 0xda) {
        if (!frame || bytes[pos + 4] !== frame.components) return "unusual JPEG structure";
        // Pillow takes the orientation from XMP when EXIF has none; browsers never read XMP.
        if (xmpOrientation && !exif) return "XMP orientation";
        // Counted as the server counts them (FF DA anywhere), with the native indexOf: a byte loop
        // over a 4 MB photo costs ten times more.
        for (var i = bytes.indexOf(0xda, 1), scans = 0; i > 0; i = bytes.indexOf(0xda, i + 1)) {
          if (bytes[i - 1] === 0xff && ++scans > MAX_SCANS) return "many JPEG scans";
        }
        return { width: frame.width, height: frame.height, orientation: exif || 0 };
      }
      pos = end;
    }
    return "unusual JPEG structure";
  }

  function readPng(bytes) {
    if (!ascii(bytes, 12, "IHDR")) return "unusual PNG structure";
    var size = { width: u32(bytes, 16), height: u32(bytes, 20) };
    var pos = 8, seenData = false;
    size.orientation = 0;
    while (pos + 12 <= bytes.length) {
      var length = u32(bytes, pos), type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
      if (type === "acTL" || type === "fcTL") return "animated PNG";
      if (type === "IDAT") seenData = true;
      if (type === "eXIf" && seenData) return "EXIF after the picture data";
      if (type === "eXIf") size.orientation = exifOrientation(bytes, pos + 8, pos + 8 + length);
      // Pillow reads EXIF from "Raw profile type" text and an orientation from XMP; browsers read
      // neither. XMP (macOS screenshots carry it) is fine when it is readable and has no orientation.
      if ((type === "tEXt" || type === "zTXt" || type === "iTXt") && ascii(bytes, pos + 8, "Raw profile type")) {
        return "EXIF in a text chunk";
      }
      if ((type === "tEXt" || type === "zTXt" || type === "iTXt") && ascii(bytes, pos + 8, "XML:com.adobe.xmp\0")) {
        var compressed = type === "zTXt" || (type === "iTXt" && bytes[pos + 8 + 18] !== 0);
        if (compressed || contains(bytes, pos + 8, pos + 8 + length, "tiff:Orientation")) return "XMP orientation";
      }
      if (type === "IEND") return size;
      pos += 12 + length;
    }
    return "unusual PNG structure";
  }

  function readWebp(bytes) {
    var pos = 12, size = null;
    while (pos + 8 <= bytes.length) {
      var type = String.fromCharCode(bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]);
      var length = (bytes[pos + 4] | (bytes[pos + 5] << 8) | (bytes[pos + 6] << 16) | (bytes[pos + 7] << 24)) >>> 0;
      var data = pos + 8;
      if (type === "ANIM" || type === "ANMF") return "animated WebP";
      if (type === "EXIF" || type === "XMP ") return "WebP with EXIF or XMP";
      if (type === "VP8X") {
        if (bytes[data] & 0x0e) return "WebP with EXIF, XMP or animation"; // flags
        size = { width: 1 + le24(bytes, data + 4), height: 1 + le24(bytes, data + 7) };
      } else if (type === "VP8 " && !size && bytes[data + 3] === 0x9d && bytes[data + 4] === 0x01 && bytes[data + 5] === 0x2a) {
        size = { width: (bytes[data + 6] | (bytes[data + 7] << 8)) & 0x3fff, height: (bytes[data + 8] | (bytes[data + 9] << 8)) & 0x3fff };
      } else if (type === "VP8L" && !size && bytes[data] === 0x2f) {
        var bits = (bytes[data + 1] | (bytes[data + 2] << 8) | (bytes[data + 3] << 16) | (bytes[data + 4] << 24)) >>> 0;
        size = { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
      }
      pos = data + length + (length & 1);
    }
    if (size) size.orientation = 0; // EXIF in a WebP is sent as it is (above)
    return size || "unusual WebP structure";
  }

  function sniff(bytes) {
    if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg";
    if (ascii(bytes, 0, "\x89PNG\r\n\x1a\n")) return "png";
    if (ascii(bytes, 0, "RIFF") && ascii(bytes, 8, "WEBP")) return "webp";
    return null;
  }

  /* The size training/imaging.py stores for a picture of width×height (as stored in the file):
     for a JPEG, libjpeg's 1/2, 1/4 or 1/8 decode picked by Pillow's draft(), then Pillow's
     thumbnail() rounding. Written in the same float operations, so the answers are the same. */
  function serverSize(width, height, jpeg, longSide) {
    if (jpeg) {
      var scale = longSide / Math.max(width, height);
      if (scale < 1) {
        var want = Math.min(Math.floor(width / Math.max(1, Math.floor(width * scale))),
                            Math.floor(height / Math.max(1, Math.floor(height * scale))));
        var s = want >= 8 ? 8 : want >= 4 ? 4 : want >= 2 ? 2 : 1;
        width = Math.ceil(width / s);
        height = Math.ceil(height / s);
      }
    }
    if (width <= longSide && height <= longSide) return [width, height];
    var aspect = width / height;
    function round(number, key) {
      var low = Math.floor(number), high = Math.ceil(number);
      return Math.max(key(high) < key(low) ? high : low, 1); // Python's min() keeps the first on a tie
    }
    if (1 >= aspect) {
      return [round(longSide * aspect, function (n) { return Math.abs(aspect - n / longSide); }), longSide];
    }
    return [longSide, round(longSide / aspect, function (n) { return n === 0 ? 0 : Math.abs(aspect - longSide / n); })];
  }

  function shapeOk(width, height, o) {
    var short = Math.min(width, height), long = Math.max(width, height);
    return short >= o.minSide && long / short <= o.maxAspect;
  }

  /* The size to draw: long side at the target, short side chosen so that the server's resize of
     the browser's JPEG gives the same stored size as its resize of the original. `stored` is the
     original's size in the file, `upright` after orientation. Null when no size does.

     Shape limits: the short side scales by target/long and long/short stays within a pixel of
     the original's ratio, so at the default target (2048) a 4:1 photo becomes 2048×512, well over
     the 256 px minimum (and not under the 512 px under which the server warns "Small"). Rather
     than rely on the arithmetic, a size the server would refuse is never chosen: the original is
     sent instead. */
  function plan(stored, upright, originalJpeg, o) {
    var final = serverSize(stored.width, stored.height, originalJpeg, o.longSide);
    if (upright.width !== stored.width) final = [final[1], final[0]];
    var landscape = upright.width >= upright.height;
    var long = landscape ? upright.width : upright.height, short = landscape ? upright.height : upright.width;
    var exact = Math.round((short * o.target) / long);
    var tries = [0, -1, 1, -2, 2];
    for (var i = 0; i < tries.length; i++) {
      var side = exact + tries[i];
      var width = landscape ? o.target : side, height = landscape ? side : o.target;
      if (side < 1 || !shapeOk(width, height, o)) continue;
      var got = serverSize(width, height, true, o.longSide);
      if (got[0] === final[0] && got[1] === final[1]) return { width: width, height: height };
    }
    return null;
  }

  function encode(bitmap, width, height) {
    var canvas = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(width, height) : document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    var ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff"; // transparent areas on white, as the server does
    ctx.fillRect(0, 0, width, height);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, 0, 0, width, height);
    if (canvas.convertToBlob) return canvas.convertToBlob({ type: "image/jpeg", quality: QUALITY });
    return new Promise(function (resolve, reject) {
      canvas.toBlob(function (blob) { blob ? resolve(blob) : reject(new Error("toBlob failed")); }, "image/jpeg", QUALITY);
    });
  }

  /* Whether this browser can do it at all, and turns photos upright when it decodes them: one
     that ignored EXIF orientation would send sideways photos without the EXIF to fix them. */
  function supported() {
    if (support) return support;
    if (typeof createImageBitmap !== "function" || !window.Blob || !window.atob) {
      support = Promise.resolve(false);
      return support;
    }
    var bytes = Uint8Array.from(atob(ROTATED_PROBE), function (c) { return c.charCodeAt(0); });
    support = createImageBitmap(new Blob([bytes], { type: "image/jpeg" }), { imageOrientation: "from-image" })
      .then(function (bitmap) {
        var upright = bitmap.width === 1 && bitmap.height === 2;
        bitmap.close();
        return upright;
      })
      .catch(function () { return false; });
    return support;
  }

  function jpegName(name) {
    return /\.jpe?g$/i.test(name) ? name : name.replace(/\.[^./\\]*$/, "") + ".jpg";
  }

  /* Resolves to {blob, name, resized, reason}: the blob to send under that name, and why the
     original was kept when it was. Never rejects: any failure sends the original. */
  function prepare(file, options) {
    var o = options;
    function keep(reason) { return { blob: file, name: file.name, resized: false, reason: reason }; }
    if (!o.target || !o.longSide) return Promise.resolve(keep("resizing is off"));
    if (file.size > o.maxFileBytes) return Promise.resolve(keep("over the file size limit"));
    var kind = null, stored = null;
    return supported().then(function (ok) {
      if (!ok) return keep("this browser cannot resize photos");
      return file.slice(0, 16).arrayBuffer().then(function (head) {
        kind = sniff(new Uint8Array(head)); // a ZIP or a HEIC is never read whole here
        return kind ? file.arrayBuffer() : null;
      }).then(function (buffer) {
        if (!kind) return keep("not a JPEG, PNG or WebP");
        var bytes = new Uint8Array(buffer);
        stored = kind === "jpeg" ? readJpeg(bytes) : kind === "png" ? readPng(bytes) : readWebp(bytes);
        if (typeof stored === "string") return keep(stored);
        if (stored.orientation < 0) return keep("unusual EXIF orientation");
        if (Math.max(stored.width, stored.height) <= o.target) return keep("already small");
        // The server refuses these before decoding; decoding a huge picture here would cost the
        // browser memory for nothing.
        if (stored.width * stored.height > o.maxPixels) return keep("over the pixel limit");
        if (!shapeOk(stored.width, stored.height, o)) return keep("outside the shape limits");
        return createImageBitmap(file, { imageOrientation: "from-image" }).then(function (bitmap) {
          var upright = { width: bitmap.width, height: bitmap.height };
          var same = upright.width === stored.width && upright.height === stored.height;
          var turned = upright.width === stored.height && upright.height === stored.width;
          // The browser must have turned the picture exactly when the EXIF says to (5-8 swap the
          // sides), or it read the orientation differently from the server.
          var shouldTurn = stored.orientation >= 5 && stored.orientation <= 8;
          var agrees = stored.width === stored.height ? same : shouldTurn ? turned : same;
          var size = agrees ? plan(stored, upright, kind === "jpeg", o) : null;
          if (!size) {
            bitmap.close();
            return keep(agrees ? "no size matches the server's" : "the browser read the orientation differently");
          }
          return encode(bitmap, size.width, size.height).then(function (blob) {
            bitmap.close();
            if (blob.size >= file.size) return keep("not smaller resized");
            return { blob: blob, name: jpegName(file.name), resized: true, reason: "" };
          });
        }, function () {
          return keep("the browser cannot decode it");
        });
      });
    }).catch(function () {
      return keep("resizing failed");
    });
  }

  /* The options from the upload form's data attributes, rendered from settings. */
  function optionsFrom(form) {
    function num(name) { return Number(form.getAttribute("data-" + name)) || 0; }
    return {
      target: num("resize-long-side"),
      longSide: num("long-side"),
      minSide: num("min-side"),
      maxAspect: num("max-aspect"),
      maxPixels: num("max-pixels"),
      maxFileBytes: num("max-file-bytes"),
    };
  }

  window.FluxsitePhotoResize = { prepare: prepare, optionsFrom: optionsFrom, serverSize: serverSize, plan: plan };
})();
