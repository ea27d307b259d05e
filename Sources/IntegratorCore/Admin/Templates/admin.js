// The admin works without JavaScript; this adds confirmations, the schedule preview as you type, and live refresh.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var question = button && button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  function setUpPreview() {
    var form = document.getElementById("schedule-form");
    var output = document.getElementById("schedule-preview");
    if (!form || !output) return;
    var timer = null;
    function refresh() {
      var data = new FormData(form);
      var query = new URLSearchParams();
      ["timing", "every", "expression", "timezone", "at", "start_time"].forEach(function (name) {
        var value = data.get(name);
        if (value) query.set(name, value);
      });
      fetch("/admin/schedules/preview.json?" + query.toString(), { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (body) {
          output.textContent = "";
          if (body.error) {
            output.textContent = body.error;
            output.className = "preview field-error";
            return;
          }
          output.className = "preview";
          var heading = document.createElement("strong");
          heading.textContent = "Next fire times (" + body.timezone + "):";
          output.appendChild(heading);
          var list = document.createElement("ol");
          body.times.forEach(function (time) {
            var item = document.createElement("li");
            item.textContent = time;
            list.appendChild(item);
          });
          output.appendChild(list);
        })
        .catch(function () { output.textContent = "The preview is unavailable."; });
    }
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    });
    form.addEventListener("change", refresh);
    refresh();
  }

  function setUpRefresh() {
    var seconds = Number(document.body.getAttribute("data-refresh"));
    if (!seconds) return;
    setInterval(function () {
      if (document.hidden) return;
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
          var current = document.getElementById("main");
          if (fresh && current) current.replaceWith(fresh);
        })
        .catch(function () {});
    }, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpPreview();
    setUpRefresh();
  });
})();
