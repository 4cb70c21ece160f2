// crs console: the few things a server-rendered page cannot do alone.
// Loaded with defer from /web/static (the CSP allows no inline script).
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Copy buttons: <button data-copy="#id" data-copied="Copied">.
  document.querySelectorAll("[data-copy]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var el = document.querySelector(btn.getAttribute("data-copy"));
      if (!el) return;
      var text = el.value !== undefined && el.tagName !== "PRE" && el.tagName !== "CODE" ? el.value : el.textContent;
      var done = function () {
        var old = btn.textContent;
        btn.textContent = btn.getAttribute("data-copied") || old;
        setTimeout(function () { btn.textContent = old; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () {});
      } else {
        var r = document.createRange();
        r.selectNodeContents(el);
        var s = window.getSelection();
        s.removeAllRanges();
        s.addRange(r);
        try { document.execCommand("copy"); done(); } catch (e) {}
      }
    });
  });

  // Forms that ask first: <form data-confirm="Are you sure?">.
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (ev) {
      if (!window.confirm(f.getAttribute("data-confirm"))) ev.preventDefault();
    });
  });

  // Streamed output: <button data-stream="/web/accounts/ID/test" data-target="#out">
  // POSTs with the CSRF header and appends the answer to the target as it arrives.
  document.querySelectorAll("[data-stream]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var out = document.querySelector(btn.getAttribute("data-target"));
      if (!out) return;
      out.textContent = "";
      btn.disabled = true;
      fetch(btn.getAttribute("data-stream"), {
        method: "POST",
        headers: { "X-CSRF-Token": csrf },
        credentials: "same-origin"
      }).then(function (resp) {
        if (!resp.body || !resp.body.getReader) return resp.text().then(function (t) { out.textContent = t; });
        var reader = resp.body.getReader();
        var dec = new TextDecoder();
        function pump() {
          return reader.read().then(function (r) {
            if (r.done) return;
            out.textContent += dec.decode(r.value, { stream: true });
            return pump();
          });
        }
        return pump();
      }).catch(function (e) {
        out.textContent += "\n" + e;
      }).then(function () {
        btn.disabled = false;
        out.setAttribute("data-done", "true");
      });
    });
  });

  // Selects that submit their form on change: <select data-autosubmit>.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { if (s.form) s.form.submit(); });
  });

  // ---- keys (keys_created.html) ----
  // A page that shows a new key once answers a POST. <el data-replace-url="/web/keys">
  // puts that address in the history entry, so reloading fetches the list
  // instead of sending the form again (which would make another key).
  document.querySelectorAll("[data-replace-url]").forEach(function (el) {
    if (window.history && history.replaceState) history.replaceState(null, "", el.getAttribute("data-replace-url"));
  });
  // ---- end keys ----
})();
