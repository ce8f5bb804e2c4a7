// DeskPilot console, agent pages: keyboard shortcuts and the queue's live-refresh announcements.
// Written for this project; no library. Everything here only enhances pages that work without it.
(function () {
  "use strict";

  var selectedId = null;

  function typing(target) {
    if (!(target instanceof Element)) {
      return false;
    }
    var tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  function queueRows() {
    return Array.prototype.slice.call(document.querySelectorAll("#queue-live tbody tr"));
  }

  function mark(row) {
    queueRows().forEach(function (other) {
      other.classList.toggle("selected", other === row);
    });
    selectedId = row ? row.getAttribute("data-id") : null;
  }

  function move(step) {
    var rows = queueRows();
    if (!rows.length) {
      return false;
    }
    var at = rows.findIndex(function (row) {
      return row.getAttribute("data-id") === selectedId;
    });
    var next = at < 0 ? (step > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, at + step));
    var row = rows[next];
    mark(row);
    var link = row.querySelector("a");
    if (link) {
      link.focus();
    }
    row.scrollIntoView({ block: "nearest" });
    return true;
  }

  function shortcut(key) {
    var target = document.querySelector('[data-shortcut="' + key + '"]');
    if (!target) {
      return false;
    }
    if (target.tagName === "SELECT") {
      target.focus();
    } else {
      target.click();
    }
    return true;
  }

  function toggleHelp() {
    var help = document.getElementById("shortcuts");
    if (!help) {
      return false;
    }
    help.open = !help.open;
    if (help.open) {
      help.scrollIntoView({ block: "nearest" });
      var summary = help.querySelector("summary");
      if (summary) {
        summary.focus();
      }
    }
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) {
      return;
    }
    var done = false;
    switch (event.key) {
      case "j":
        done = move(1);
        break;
      case "k":
        done = move(-1);
        break;
      case "c":
      case "e":
      case "a":
      case "n":
        done = shortcut(event.key);
        break;
      case "?":
        done = toggleHelp();
        break;
      default:
        return;
    }
    if (done) {
      event.preventDefault();
    }
  });

  // Keep the selection across refreshes, and say (politely) when the queue changed.
  var lastTotal = null;
  var lastNewest = null;

  function snapshot() {
    var live = document.getElementById("queue-live");
    var rows = queueRows();
    return {
      total: live ? live.getAttribute("data-total") : null,
      newest: rows.length ? rows[0].getAttribute("data-id") : null,
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var first = snapshot();
    lastTotal = first.total;
    lastNewest = first.newest;
  });

  document.addEventListener("htmx:afterSettle", function () {
    var now = snapshot();
    if (selectedId) {
      var row = queueRows().find(function (candidate) {
        return candidate.getAttribute("data-id") === selectedId;
      });
      mark(row || null);
      if (row && (document.activeElement === document.body || !document.activeElement)) {
        var link = row.querySelector("a");
        if (link) {
          link.focus();
        }
      }
    }
    var announce = document.getElementById("queue-announce");
    if (announce && (now.total !== lastTotal || now.newest !== lastNewest)) {
      announce.textContent = "Queue updated: " + (now.total || "0") + " tickets.";
    }
    lastTotal = now.total;
    lastNewest = now.newest;
  });

  // A click on a row's empty space opens it too (the message link stays the keyboard's way in).
  document.addEventListener("click", function (event) {
    var cell = event.target instanceof Element ? event.target.closest("#queue-live tbody td") : null;
    if (!cell || event.target.closest("a, button, input, select, textarea")) {
      return;
    }
    var link = cell.parentElement.querySelector("a");
    if (link) {
      link.click();
    }
  });
})();
