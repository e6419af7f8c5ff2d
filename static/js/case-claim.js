/* NeoPain case page: the nurse's work is never lost to an expiring claim.
   - a countdown of her claim, extended by a heartbeat while she is scoring;
   - every entry kept as a draft in sessionStorage and put back whenever the form comes back empty
     (a conflict, a reload, coming back to the case);
   - the claim released when she leaves the case (pagehide + sendBeacon), taken again on a reload;
   - a warning before leaving a half-filled form with the mouse (beforeunload).
   Plain JavaScript, no build step; the page works without it. */
(function () {
  "use strict";

  var BEAT_EVERY_MS = 30000; // at most one heartbeat per 30 s of editing...
  var BEAT_MIN_GAP_MS = 2000; // ...and never two within 2 s, even near the end of the claim
  var WARN_LEFT_S = 120; // the countdown turns amber with two minutes left
  var RECLAIM_WITHIN_MS = 15000; // a reload within this of our own release takes the claim again
  var DRAFT_MAX_AGE_MS = 12 * 3600 * 1000;

  function store() {
    try {
      return window.sessionStorage;
    } catch (e) {
      return null; // storage disabled: the page still works, drafts are not kept
    }
  }

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function mmss(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var s = seconds % 60;
    return Math.floor(seconds / 60) + ":" + (s < 10 ? "0" : "") + s;
  }

  /* --- drafts --------------------------------------------------------------------------- */
  function draftKey(box) {
    return "neopain:draft:" + box.getAttribute("data-user") + ":" + box.getAttribute("data-case");
  }

  function fields(form) {
    return Array.prototype.slice.call(form.elements).filter(function (el) {
      return el.name && el.name !== "csrfmiddlewaretoken" && el.type !== "submit" && el.type !== "button";
    });
  }

  function readForm(form) {
    var values = {};
    fields(form).forEach(function (el) {
      if (el.type === "radio") {
        if (el.checked) values[el.name] = el.value;
      } else if (el.type === "checkbox") {
        if (el.checked) values[el.name] = true;
      } else if (el.value) {
        values[el.name] = el.value;
      }
    });
    return values;
  }

  // What the server put in the form (its defaults, e.g. the observation time): not her entries.
  var baseline = null;
  var pristine = true;

  function hasEntries(form) {
    return !pristine || JSON.stringify(readForm(form)) !== JSON.stringify(baseline || {});
  }

  function fillForm(form, values) {
    var touched = null;
    fields(form).forEach(function (el) {
      if (!(el.name in values)) return;
      if (el.type === "radio") {
        el.checked = String(values[el.name]) === el.value;
        if (el.checked) touched = el;
      } else if (el.type === "checkbox") {
        el.checked = !!values[el.name];
        touched = touched || el;
      } else {
        el.value = values[el.name];
      }
    });
    // neopain.js recomputes the total (and marks the form as having unsaved scores) on change.
    (touched || form).dispatchEvent(new Event("change", { bubbles: true }));
  }

  function saveDraft(box, form) {
    var s = store();
    if (!s) return;
    if (hasEntries(form)) s.setItem(draftKey(box), JSON.stringify({ at: Date.now(), values: readForm(form) }));
    else s.removeItem(draftKey(box));
  }

  function loadDraft(box) {
    var s = store();
    if (!s) return null;
    try {
      var draft = JSON.parse(s.getItem(draftKey(box)) || "null");
      if (draft && Date.now() - draft.at < DRAFT_MAX_AGE_MS) return draft.values;
    } catch (e) {
      /* a damaged draft is dropped below */
    }
    s.removeItem(draftKey(box));
    return null;
  }

  /* A submit that left the case page for another page succeeded: drop that case's draft. */
  function settlePendingSubmit(box) {
    var s = store();
    if (!s) return;
    var pending = s.getItem("neopain:submitting");
    if (!pending) return;
    s.removeItem("neopain:submitting");
    var here = box ? box.getAttribute("data-user") + ":" + box.getAttribute("data-case") : "";
    if (pending !== here || !document.getElementById("nips-form")) s.removeItem("neopain:draft:" + pending);
  }

  function clearAllDrafts() {
    var s = store();
    if (!s) return;
    for (var i = s.length - 1; i >= 0; i--) {
      var key = s.key(i);
      if (key && key.indexOf("neopain:") === 0) s.removeItem(key);
    }
  }

  /* --- the claim ------------------------------------------------------------------------ */
  function setup() {
    var box = document.getElementById("case-claim");
    settlePendingSubmit(box);
    // Signing out leaves no scores or notes behind in the tab.
    document.addEventListener("submit", function (event) {
      var action = event.target.getAttribute("action") || "";
      if (/\/logout\/?$/.test(action)) clearAllDrafts();
    });
    if (!box) return;

    var form = document.getElementById("nips-form");
    var clock = document.getElementById("claim-clock");
    var text = document.getElementById("claim-text");
    var keep = document.getElementById("claim-keep");
    var problem = document.getElementById("claim-problem");
    var restored = document.getElementById("draft-restored");
    var pinClocks = document.querySelectorAll("[data-claim-clock]");
    var heldByMe = box.getAttribute("data-held-by-me") === "1";
    var s = store();
    var caseKey = box.getAttribute("data-user") + ":" + box.getAttribute("data-case");

    var deadline = Date.now() + parseInt(box.getAttribute("data-seconds-left") || "0", 10) * 1000;
    var expiresAt = box.getAttribute("data-expires-at") || ""; // the claim's end as the server wrote it
    var lastActivity = 0;
    var lastBeat = Date.now();
    var beating = false;
    var reclaim = false; // set in 3.: a reload takes back a claim our own release gave up
    var lost = false; // another nurse holds it, it was released or decided: stop beating
    var leaving = false; // our own form is being submitted: no release, no warning

    function showProblem(html) {
      if (!problem) return;
      problem.hidden = false;
      problem.innerHTML = html;
    }

    // 1. Entries first: a form that came back empty gets the draft; one the server filled is the draft.
    if (form) {
      // A form the server sent back after a refusal holds her entries; a fresh one only defaults.
      pristine = box.getAttribute("data-form-pristine") === "1";
      baseline = readForm(form);
      var draft = loadDraft(box);
      if (draft && pristine) {
        fillForm(form, draft);
        pristine = JSON.stringify(readForm(form)) === JSON.stringify(baseline);
        if (restored && !pristine) restored.hidden = false;
      } else if (!pristine) {
        saveDraft(box, form);
      }
      form.addEventListener("change", function () {
        saveDraft(box, form);
      });
      form.addEventListener("input", function () {
        saveDraft(box, form);
      });
      ["change", "input", "keydown", "pointerdown"].forEach(function (type) {
        form.addEventListener(type, function () {
          lastActivity = Date.now();
        });
      });
    }

    // 2. Our own forms (submit, claim, release) navigate on purpose.
    document.addEventListener("submit", function (event) {
      if (event.defaultPrevented) return;
      var target = event.target;
      if (!target.closest || !target.closest("#case-page")) return;
      leaving = true;
      if (target === form && s) s.setItem("neopain:submitting", caseKey);
    });
    // neopain.js: J/K after the second press (it asked already).
    document.addEventListener("neopain:navigate", function () {
      leaving = true;
    });

    // 3. A reload right after our own release takes the claim again (she never left the case).
    //    The release is conditional on the claim's end it knew: renewing the claim at once makes a
    //    release still in flight a no-op, and one that landed first is undone by claiming again.
    var releasedAt = s ? parseInt(s.getItem("neopain:released:" + caseKey) || "0", 10) : 0;
    if (s) s.removeItem("neopain:released:" + caseKey);
    var returning = releasedAt && Date.now() - releasedAt < RECLAIM_WITHIN_MS;
    reclaim = !!returning;
    var claimButton = document.getElementById("claim-button");
    if (returning && !heldByMe && claimButton) {
      leaving = true;
      claimButton.form.submit();
      return;
    }

    // 4. The countdown and the heartbeat (only while she holds the case).
    function render() {
      var left = (deadline - Date.now()) / 1000;
      var label = lost ? "lost" : mmss(left);
      if (clock) clock.textContent = label;
      pinClocks.forEach(function (el) {
        el.textContent = label;
      });
      box.classList.toggle("claim-timer--low", left <= WARN_LEFT_S && left > 0);
      box.classList.toggle("claim-timer--lapsed", left <= 0);
      if (!text || lost) return;
      if (left <= 0) {
        text.textContent = "Your claim has lapsed. Your entries are kept: score on or press Keep to take the case back if nobody else has.";
      } else if (left <= WARN_LEFT_S) {
        text.textContent = "left on your claim. Score on or press Keep, or it goes back to the queue.";
      } else {
        text.textContent = "left on your claim. It is extended while you score.";
      }
    }

    function post(url) {
      return fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      }).then(function (response) {
        return response.json().then(
          function (body) {
            return { status: response.status, body: body };
          },
          function () {
            return { status: response.status, body: null };
          }
        );
      });
    }

    function heartbeat() {
      if (beating || lost) return;
      beating = true;
      lastBeat = Date.now();
      var started = Date.now();
      post(box.getAttribute("data-heartbeat-url"))
        .then(function (answer) {
          if (answer.status === 409 && answer.body && answer.body.code === "not_held" && reclaim) {
            reclaim = false; // our own release landed first: take the case back once
            return post(box.getAttribute("data-claim-url")).then(function (again) {
              if (again.status === 200) {
                lastBeat = 0;
                lastActivity = Date.now();
              }
              return again;
            });
          }
          return answer;
        })
        .then(function (answer) {
          if (answer.status === 200) {
            if (answer.body.claim_seconds_left !== undefined) deadline = started + answer.body.claim_seconds_left * 1000;
            if (answer.body.claim_expires_at) expiresAt = answer.body.claim_expires_at;
            if (problem && problem.getAttribute("data-from") === "heartbeat") problem.hidden = true;
          } else if (answer.status === 409 || answer.status === 404 || answer.status === 403) {
            lost = true;
            box.classList.add("claim-timer--lost");
            // "You hold this case" and its release button no longer hold.
            var status = box.closest(".claim-status");
            if (status) {
              status.querySelectorAll(".state--mine, .state--mine + form").forEach(function (el) {
                el.hidden = true;
              });
            }
            var why = (answer.body && answer.body.detail) || "You no longer hold this case.";
            if (text) text.textContent = "";
            if (keep) keep.hidden = true;
            if (problem) problem.setAttribute("data-from", "heartbeat");
            var tail = answer.body && answer.body.code === "not_held"
              ? " Submitting still saves your entries if nobody else has claimed the case."
              : " Your entries are kept here (in this browser tab) and were not saved.";
            showProblem("<strong>Claim lost:</strong> " + escapeHtml(why) + escapeHtml(tail));
          } else if (answer.status === 401) {
            showProblem("<strong>Signed out:</strong> your entries are kept in this browser tab; sign in again to save them.");
          }
        })
        .catch(function () {
          /* offline for a moment: the next tick tries again */
        })
        .then(function () {
          beating = false;
        });
    }

    function tick() {
      render();
      if (!heldByMe || lost) return;
      var now = Date.now();
      var left = (deadline - now) / 1000;
      var active = lastActivity > lastBeat;
      if (active && now - lastBeat >= BEAT_MIN_GAP_MS && (now - lastBeat >= BEAT_EVERY_MS || left <= 60)) heartbeat();
    }

    if (heldByMe) {
      if (keep) {
        keep.addEventListener("click", function () {
          lastActivity = Date.now();
          heartbeat();
        });
      }
      render();
      setInterval(tick, 1000);
      if (returning) heartbeat(); // a reload: renew now (see 3.)
    }

    // 5. Leaving the case gives it back to the queue (a reload takes it again: step 3).
    window.addEventListener("pagehide", function () {
      if (!heldByMe || lost || leaving) return;
      var body = new FormData();
      body.append("csrfmiddlewaretoken", csrfToken());
      if (expiresAt) body.append("claim_expires_at", expiresAt);
      if (navigator.sendBeacon && navigator.sendBeacon(box.getAttribute("data-release-url"), body)) {
        if (s) s.setItem("neopain:released:" + caseKey, String(Date.now()));
      }
    });
    // Back to a page kept in the browser's cache: its claim state is stale, ask the server.
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) window.location.reload();
    });

    // 6. Mouse navigation away from a half-filled form asks first (J/K ask in neopain.js).
    window.addEventListener("beforeunload", function (event) {
      if (leaving || !form || !hasEntries(form)) return;
      var fieldset = form.querySelector("fieldset");
      if (fieldset && fieldset.disabled && !lost) return; // read-only kept entries: the draft keeps them
      event.preventDefault();
      event.returnValue = "";
    });
  }

  function escapeHtml(value) {
    return String(value).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
