/* JSON editor for the artifact admin: line numbers, live syntax check, Format/Compact,
   Tab indents, and a submit guard so broken JSON never reaches the server as a surprise.
   Plain ES2015, no dependencies: the admin must work offline. */
(function () {
  "use strict";

  function locate(text, message) {
    // Chromium: "... at position 12 (line 2 column 5)"; Firefox: "at line 2 column 5".
    var lc = /line (\d+) column (\d+)/.exec(message);
    if (lc) return "line " + lc[1] + ", column " + lc[2];
    var pos = /position (\d+)/.exec(message);
    if (pos) {
      var before = text.slice(0, Number(pos[1])).split("\n");
      return "line " + before.length + ", column " + (before[before.length - 1].length + 1);
    }
    return "";
  }

  function check(text) {
    try {
      var value = JSON.parse(text);
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        return { ok: false, message: "The payload must be a JSON object { ... }" };
      }
      return { ok: true, value: value };
    } catch (err) {
      var where = locate(text, String(err.message));
      return { ok: false, message: "Invalid JSON" + (where ? " at " + where : "") + ": " + err.message };
    }
  }

  function setup(root) {
    var input = root.querySelector("textarea");
    var gutter = root.querySelector("[data-json-gutter]");
    var status = root.querySelector("[data-json-status]");
    if (!input || input.dataset.jsonEditorReady) return;
    input.dataset.jsonEditorReady = "1";

    function renderGutter() {
      var lines = input.value.split("\n").length;
      var out = [];
      for (var i = 1; i <= lines; i++) out.push(i);
      gutter.textContent = out.join("\n");
      gutter.scrollTop = input.scrollTop;
    }

    function validate() {
      var result = check(input.value);
      root.classList.toggle("json-editor-invalid", !result.ok);
      root.classList.toggle("json-editor-valid", result.ok);
      status.textContent = result.ok ? "Valid JSON" : result.message;
      return result;
    }

    function rewrite(indent) {
      var result = validate();
      if (!result.ok) return;
      input.value = JSON.stringify(result.value, null, indent);
      renderGutter();
      validate();
    }

    root.querySelector("[data-json-format]").addEventListener("click", function () { rewrite(2); });
    root.querySelector("[data-json-compact]").addEventListener("click", function () { rewrite(0); });
    input.addEventListener("input", function () { renderGutter(); validate(); });
    input.addEventListener("scroll", function () { gutter.scrollTop = input.scrollTop; });
    input.addEventListener("keydown", function (event) {
      if (event.key !== "Tab" || event.shiftKey || event.ctrlKey || event.altKey || event.metaKey) return;
      event.preventDefault();
      var start = input.selectionStart;
      input.setRangeText("  ", start, input.selectionEnd, "end");
      renderGutter();
    });
    if (input.form) {
      input.form.addEventListener("submit", function (event) {
        // Only the payload save is guarded; other buttons (transitions) post elsewhere.
        var submitter = event.submitter;
        if (submitter && submitter.getAttribute("formaction")) return;
        if (!validate().ok) {
          event.preventDefault();
          input.focus();
        }
      });
    }
    renderGutter();
    validate();
  }

  function init() {
    var roots = document.querySelectorAll("[data-json-editor-root]");
    for (var i = 0; i < roots.length; i++) setup(roots[i]);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
