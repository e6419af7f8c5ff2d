/* NeoPain UI behaviour: keyboard-only scoring, live total, J/K navigation, live-refresh guards.
   Plain JavaScript, no build step. The pages work without it; it makes them faster by keyboard. */
(function () {
  "use strict";

  function isTyping(el) {
    if (!el) return false;
    var tag = el.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable) return true;
    if (tag === "INPUT") {
      var type = (el.type || "text").toLowerCase();
      return ["radio", "checkbox", "button", "submit", "reset"].indexOf(type) === -1;
    }
    return false;
  }

  function ageText(seconds) {
    if (seconds < 60) return "just now";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 48) return hours + " h " + (minutes < 10 ? "0" : "") + minutes + " min";
    return Math.floor(hours / 24) + " d";
  }

  function refreshAges(root) {
    (root || document).querySelectorAll("[data-since]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(since)) el.textContent = ageText(Math.max(0, (Date.now() - since) / 1000));
    });
    refreshAgo(root);
  }

  /* "2 min ago" labels of the time_ago template filter (triage/templatetags/neopain_ui.py). */
  function refreshAgo(root) {
    (root || document).querySelectorAll("[data-ago]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("data-ago"));
      if (isNaN(at)) return;
      var seconds = Math.max(0, (Date.now() - at) / 1000);
      el.textContent = seconds < 60 ? "just now" : ageText(seconds) + " ago";
    });
  }

  /* --- a <select data-autosubmit> submits its form on change (no inline handlers: CSP) ----- */
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el && el.matches && el.matches("select[data-autosubmit]") && el.form) el.form.submit();
  });

  /* --- live refresh guards ------------------------------------------------------------- */
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    // Idle logoff redirected the poll to the sign-in page: go there instead of pasting it in.
    if (xhr && xhr.responseURL && xhr.responseURL.indexOf("/login/") !== -1) {
      event.detail.shouldSwap = false;
      window.location.href = xhr.responseURL;
      return;
    }
    // Never wipe what someone is typing (an acknowledgement note) or the row that has focus.
    var target = event.detail.target;
    var active = document.activeElement;
    if (target && active && target.contains(active) && active !== document.body) {
      if (isTyping(active) || (active.value && active.value.length)) {
        event.detail.shouldSwap = false;
        return;
      }
      if (active.matches("a.case-link")) window.__neopainLastRow = active.getAttribute("href");
      // A pager link (top or bottom) keeps the focus too, so a keyboard user is not thrown to the top.
      var pager = active.closest(".queue-pager");
      if (pager && active.hasAttribute("rel")) {
        window.__neopainLastPager = ".queue-pager--" + (pager.classList.contains("queue-pager--bottom") ? "bottom" : "top") + ' [rel="' + active.getAttribute("rel") + '"]';
      }
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    refreshAges(event.detail.target);
  });
  // The swapped-in queue is new DOM: put the keyboard focus back on the same case.
  document.addEventListener("htmx:afterSettle", function () {
    var queue = document.getElementById("queue");
    if (!queue || document.activeElement !== document.body) return;
    var pager = window.__neopainLastPager && queue.querySelector(window.__neopainLastPager);
    window.__neopainLastPager = null;
    if (pager) {
      pager.focus();
      return;
    }
    if (!window.__neopainLastRow) return;
    var link = queue.querySelector('a.case-link[href="' + window.__neopainLastRow + '"]');
    if (link) link.focus();
  });

  /* --- queue: J/K move between cases ----------------------------------------------------- */
  function queueKeys(event) {
    // J/K skip cases another nurse holds: she cannot score them now.
    var links = Array.prototype.slice.call(document.querySelectorAll("#queue a.case-link")).filter(function (link) {
      return link === document.activeElement || !link.closest(".case-row--held");
    });
    if (!links.length) return;
    var index = links.indexOf(document.activeElement);
    var key = event.key.toLowerCase();
    if (key === "j") index = Math.min(links.length - 1, index + 1);
    else if (key === "k") index = index <= 0 ? 0 : index - 1;
    else return;
    event.preventDefault();
    links[index].focus();
    window.__neopainLastRow = links[index].getAttribute("href");
    links[index].scrollIntoView({ block: "nearest" });
  }

  /* --- case: NIPS by keyboard -------------------------------------------------------------- */
  function setupCase() {
    var page = document.getElementById("case-page");
    if (!page) return false;
    var form = document.getElementById("nips-form");
    var totalEl = document.getElementById("nips-total");
    var problem = document.getElementById("nips-problem");
    var unableToggle = document.getElementById("unable-toggle");
    var dirty = false;
    var leaveArmedUntil = 0;

    function items() {
      return form ? Array.prototype.slice.call(form.querySelectorAll(".nips-item")) : [];
    }
    function valueOf(item) {
      var checked = item.querySelector("input[type=radio]:checked");
      if (!checked) return null;
      return checked.value === "x" ? "x" : parseInt(checked.value, 10);
    }
    function unable() {
      return unableToggle && unableToggle.checked;
    }
    function method() {
      var checked = form && form.querySelector("input[name=method]:checked");
      return checked ? checked.value : null;
    }
    function call() {
      var checked = form && form.querySelector("input[name=nurse_call]:checked");
      return checked ? checked.value : null;
    }
    // From the image only: the bedside items cannot be seen, so they are not asked (not observed).
    function imageOnly() {
      var only = method() === "image";
      items().forEach(function (item) {
        if (item.hasAttribute("data-bedside")) {
          item.disabled = only;
          item.classList.toggle("is-unseen", only);
        }
      });
      return only;
    }
    function activeItems() {
      return items().filter(function (item) { return !item.disabled; });
    }

    /* The total exists only for a complete observation (all six observed); else the nurse's call decides. */
    function updateTotal() {
      if (!form || !totalEl) return;
      var rule = parseInt(form.getAttribute("data-rule"), 10);
      var only = imageOnly();
      var total = 0, missing = [], unseen = [];
      activeItems().forEach(function (item) {
        var v = valueOf(item);
        if (v === null) missing.push(item.getAttribute("data-label"));
        else if (v === "x") unseen.push(item.getAttribute("data-label"));
        else total += v;
      });
      form.classList.toggle("is-unable", unable());
      form.classList.toggle("needs-call", only || unseen.length > 0);
      totalEl.classList.remove("is-pain", "is-nopain");
      if (unable()) {
        totalEl.textContent = "Unable to assess: give the reason below. No total is recorded.";
      } else if (missing.length) {
        totalEl.textContent = "Still to score or mark not observed: " + missing.join(", ") + ".";
      } else if (only || unseen.length) {
        var what = only ? "Face only" : "Not observed: " + unseen.join(", ");
        var c = call();
        totalEl.textContent = what + ". No NIPS total" + (c ? " — your call: " + (c === "pain" ? "PAIN." : "no pain.") : ": give your own call below.");
        if (c) totalEl.classList.add(c === "pain" ? "is-pain" : "is-nopain");
      } else if (total >= rule) {
        totalEl.textContent = "Total " + total + " of 7: PAIN by the unit rule (total ≥ " + rule + ").";
        totalEl.classList.add("is-pain");
      } else {
        totalEl.textContent = "Total " + total + " of 7: no pain by the unit rule (total ≥ " + rule + ").";
        totalEl.classList.add("is-nopain");
      }
    }

    function hint(item, text) {
      var el = item.querySelector("[data-hint]");
      if (el) el.textContent = text || "";
    }

    function dirtyWarning() {
      return Date.now() <= leaveArmedUntil;
    }

    function refuse(text, focus) {
      problem.hidden = false;
      problem.textContent = text;
      if (focus) focus.focus();
      return false;
    }

    function validate() {
      if (unable()) {
        var reason = form.querySelector("input[name=unable_reason]");
        if (!reason.value.trim()) return refuse("Say why the baby could not be assessed.", reason);
        return true;
      }
      var firstMissing = null, names = [], unseen = 0;
      activeItems().forEach(function (item) {
        var v = valueOf(item);
        if (v === "x") unseen += 1;
        if (v === null) {
          names.push(item.getAttribute("data-label"));
          hint(item, "Score this item, or mark it not observed.");
          if (!firstMissing) firstMissing = item;
        }
      });
      if (firstMissing) {
        return refuse("Score or mark every item first. Missing: " + names.join(", ") + ".", firstMissing.querySelector("input[type=radio]"));
      }
      if (!method()) return refuse("Say how the baby was observed: at the cot, from video, or the image only.", form.querySelector("input[name=method]"));
      if ((method() === "image" || unseen) && !call()) {
        return refuse("No NIPS total without every item observed: give your own pain / no pain call.", form.querySelector("input[name=nurse_call]"));
      }
      problem.hidden = true;
      return true;
    }

    if (form) {
      form.addEventListener("change", function (event) {
        dirty = true;
        var item = event.target.closest(".nips-item");
        if (item) hint(item, "");
        if (problem && !problem.hidden && !dirtyWarning()) problem.hidden = true;
        updateTotal();
      });
      form.addEventListener("input", function () { dirty = true; });
      form.addEventListener("submit", function (event) {
        if (!validate()) event.preventDefault();
        else dirty = false;
      });
      updateTotal();
    }

    document.addEventListener("keydown", function (event) {
      if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
      var active = document.activeElement;
      var inForm = form && form.contains(active);
      var fieldsetDisabled = form && form.querySelector("fieldset.nips") && form.querySelector("fieldset.nips").disabled;

      // N marks the focused item not observed.
      if (inForm && (event.key === "n" || event.key === "N") && !isTyping(active) && !fieldsetDisabled) {
        var unseenItem = active.closest(".nips-item");
        if (unseenItem) {
          event.preventDefault();
          var none = unseenItem.querySelector('input[type=radio][value="x"]');
          none.checked = true;
          none.focus();
          none.dispatchEvent(new Event("change", { bubbles: true }));
          return;
        }
      }

      // Digits score the item that has focus.
      if (inForm && /^[0-9]$/.test(event.key) && !isTyping(active)) {
        var item = active.closest(".nips-item");
        if (!item || fieldsetDisabled) return;
        event.preventDefault();
        var value = parseInt(event.key, 10);
        var max = parseInt(item.getAttribute("data-max"), 10);
        if (value > max) {
          hint(item, item.getAttribute("data-label") + " is scored 0 to " + max + ".");
          return;
        }
        var radio = item.querySelector('input[type=radio][value="' + value + '"]');
        radio.checked = true;
        radio.focus();
        radio.dispatchEvent(new Event("change", { bubbles: true }));
        return;
      }

      // Enter submits from anywhere in the form except the note (new lines) and buttons (they click).
      if (inForm && event.key === "Enter" && active.tagName !== "TEXTAREA" && active.tagName !== "BUTTON" && !fieldsetDisabled) {
        event.preventDefault();
        if (typeof form.requestSubmit === "function") form.requestSubmit(document.getElementById("nips-submit"));
        else if (validate()) form.submit();
        return;
      }

      // J/K: next/previous case (not while typing). A half-scored form asks for a second press.
      var key = event.key.toLowerCase();
      if ((key === "j" || key === "k") && !isTyping(active)) {
        var url = page.getAttribute(key === "j" ? "data-next-url" : "data-prev-url");
        if (!url) return;
        event.preventDefault();
        if (dirty && Date.now() > leaveArmedUntil) {
          leaveArmedUntil = Date.now() + 3000;
          if (problem) {
            problem.hidden = false;
            problem.textContent = "You have unsaved scores. Press " + key.toUpperCase() + " again to leave this case without saving.";
          }
          return;
        }
        document.dispatchEvent(new CustomEvent("neopain:navigate")); // case-claim.js: no second warning
        window.location.href = url;
      }
    });
    return true;
  }

  /* --- going to the cot: the one-minute observation timer (issue 13) --------------------- */
  function setupBedsideTimer() {
    var timer = document.querySelector("[data-bedside-timer]");
    if (!timer) return;
    var until = Date.parse(timer.getAttribute("data-until"));
    if (isNaN(until)) return;
    function tick() {
      var left = Math.ceil((until - Date.now()) / 1000);
      if (left > 0) {
        var seconds = left % 60;
        timer.textContent = Math.floor(left / 60) + ":" + (seconds < 10 ? "0" : "") + seconds + " left of the one-minute observation";
        return;
      }
      timer.textContent = "One minute observed: score what you saw.";
      timer.classList.add("is-done");
      clearInterval(handle);
    }
    var handle = setInterval(tick, 1000);
    tick();
  }

  /* --- full frame on demand (loaded, and audited, only when opened) ---------------------- */
  function setupLazyImages() {
    document.querySelectorAll("details[data-lazy-image]").forEach(function (details) {
      details.addEventListener("toggle", function () {
        if (!details.open) return;
        details.querySelectorAll("img[data-src]").forEach(function (img) {
          if (!img.getAttribute("src")) img.setAttribute("src", img.getAttribute("data-src"));
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var onCase = setupCase();
    setupLazyImages();
    setupBedsideTimer();
    refreshAges();
    setInterval(refreshAges, 20000);
    if (!onCase) {
      document.addEventListener("keydown", function (event) {
        if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
        if (isTyping(document.activeElement)) return;
        if (document.getElementById("queue")) queueKeys(event);
      });
    }
    // Autofocus is ignored after a redirect in some browsers: make sure the first control has it.
    var auto = document.querySelector("[autofocus]");
    if (auto && document.activeElement === document.body) auto.focus();
  });
})();
