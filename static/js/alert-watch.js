/* NeoPain alerts that reach people: the open-alert badge on every page kept current, and, when the
   nurse turns them on (per browser, remembered), a sound and a browser notification for each new
   alert; the charge nurse also hears about escalations. Polls GET /api/v1/alerts/summary/?poll=1
   (a poll does not count as activity for the idle logoff). Plain JavaScript, no build step. */
(function () {
  "use strict";

  var PREFS_KEY = "neopain:alert-prefs";

  function local() {
    try {
      return window.localStorage;
    } catch (e) {
      return null;
    }
  }

  function prefs() {
    var s = local();
    try {
      return JSON.parse((s && s.getItem(PREFS_KEY)) || "{}") || {};
    } catch (e) {
      return {};
    }
  }

  function savePrefs(value) {
    var s = local();
    if (s) s.setItem(PREFS_KEY, JSON.stringify(value));
  }

  /* --- sound: two tones from WebAudio (no media file, nothing to fetch) ------------------- */
  var audio = null;
  function audioContext() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) audio = new Ctx();
    if (audio.state === "suspended" && audio.resume) audio.resume();
    return audio;
  }

  function chime(times) {
    var ctx = audioContext();
    if (!ctx) return false;
    var start = ctx.currentTime + 0.05;
    for (var i = 0; i < times; i++) {
      [880, 660].forEach(function (freq, j) {
        var osc = ctx.createOscillator();
        var gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = freq;
        var at = start + i * 0.7 + j * 0.25;
        gain.gain.setValueAtTime(0.0001, at);
        gain.gain.exponentialRampToValueAtTime(0.4, at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.22);
        osc.connect(gain);
        gain.connect(ctx.destination);
        osc.start(at);
        osc.stop(at + 0.24);
      });
    }
    return true;
  }

  // Browsers start audio only after a click or key on the page: be ready at the first one.
  function unlockAudioOnGesture() {
    function unlock() {
      if (prefs().sound) audioContext();
      document.removeEventListener("pointerdown", unlock, true);
      document.removeEventListener("keydown", unlock, true);
    }
    document.addEventListener("pointerdown", unlock, true);
    document.addEventListener("keydown", unlock, true);
  }

  /* --- notifications ------------------------------------------------------------------- */
  function notify(title, body, tag, url) {
    if (!("Notification" in window) || Notification.permission !== "granted") return false;
    try {
      var note = new Notification(title, { body: body, tag: tag, requireInteraction: true });
      note.onclick = function () {
        window.focus();
        if (url) window.location.href = url;
        note.close();
      };
      return true;
    } catch (e) {
      return false; // some browsers allow notifications from a service worker only
    }
  }

  function describe(brief) {
    var what = brief.source === "nurse"
      ? "Nurse-confirmed pain" + (brief.nips_total !== null && brief.nips_total !== undefined ? ", NIPS " + brief.nips_total : "")
      : "The model is confident of pain";
    var at = new Date(brief.created_at);
    var hhmm = isNaN(at) ? "" : " · " + ("0" + at.getHours()).slice(-2) + ":" + ("0" + at.getMinutes()).slice(-2);
    return what + hhmm + ". Open NeoPain to acknowledge.";
  }

  function announce(kind, brief, alertsUrl) {
    var p = prefs();
    var bed = brief && brief.bed ? "bed " + brief.bed : "a baby";
    var title = kind === "escalated" ? "Escalated: pain alert for " + bed + " not acknowledged" : "Pain alert: " + bed;
    var record = { kind: kind, id: brief ? brief.id : null, sound: false, notification: false };
    if (p.sound) record.sound = chime(kind === "escalated" ? 3 : 1);
    if (p.notify && brief) record.notification = notify(title, describe(brief), "neopain-" + kind + "-" + brief.id, alertsUrl);
    (window.__neopainAnnouncements = window.__neopainAnnouncements || []).push(record);
  }

  /* --- the badge and the poll ------------------------------------------------------------ */
  function setup() {
    unlockAudioOnGesture();
    setupPrefs();
    var badge = document.getElementById("alert-badge");
    if (!badge) return;
    var user = badge.getAttribute("data-user");
    var alertsUrl = badge.getAttribute("data-alerts-url");
    var summaryUrl = badge.getAttribute("data-summary-url");
    var s = local();
    var seenKey = "neopain:alerts-seen:" + user;
    var escalatedKey = "neopain:escalated-seen:" + user;

    function seen(key) {
      return s ? parseInt(s.getItem(key) || "-1", 10) : -1;
    }

    // First visit on this browser: what is open now was there before; announce only what comes.
    function check(key, newestId, kind, brief) {
      if (!s) return;
      if (newestId === null || newestId === undefined || isNaN(newestId)) {
        if (seen(key) < 0) s.setItem(key, "0"); // nothing open now: every alert from here on is new
        return;
      }
      var last = seen(key);
      if (last < 0) {
        s.setItem(key, String(newestId));
        return;
      }
      if (newestId > last) {
        s.setItem(key, String(newestId));
        announce(kind, brief, alertsUrl);
      }
    }

    function render(summary) {
      var count = badge.querySelector("[data-badge-count]");
      var words = badge.querySelector("[data-badge-words]");
      if (count) count.textContent = String(summary.open);
      if (words) words.textContent = " open" + (summary.escalated ? ", " + summary.escalated + " escalated" : "");
      badge.hidden = !summary.open;
      badge.classList.toggle("alert-badge--escalated", !!summary.escalated);
      badge.classList.toggle("alert-badge--open", !!summary.open && !summary.escalated);
      var banner = document.getElementById("escalation-banner");
      if (summary.escalated_to_me && summary.escalated && !banner) {
        banner = document.createElement("div");
        banner.id = "escalation-banner";
        banner.className = "banner banner--escalated";
        banner.setAttribute("role", "alert");
        var header = document.querySelector(".topbar");
        if (header && header.parentNode) header.parentNode.insertBefore(banner, header.nextSibling);
      }
      if (banner) {
        if (!summary.escalated_to_me || !summary.escalated) {
          banner.hidden = true;
        } else {
          banner.hidden = false;
          banner.innerHTML = "<strong>Escalated to you:</strong> " + summary.escalated + " pain alert" +
            (summary.escalated === 1 ? "" : "s") + ' nobody acknowledged in time. <a href="' + alertsUrl + '">Open the alerts</a>';
        }
      }
    }

    // What the server rendered into the page counts as a first summary (no request needed).
    var newest = parseInt(badge.getAttribute("data-newest"), 10);
    var newestEscalated = parseInt(badge.getAttribute("data-newest-escalated"), 10);
    var pollMs = (parseInt(badge.getAttribute("data-poll-seconds"), 10) || 10) * 1000;
    var pending = null;
    if ((!isNaN(newest) && newest > seen(seenKey) && seen(seenKey) >= 0) ||
        (!isNaN(newestEscalated) && newestEscalated > seen(escalatedKey) && seen(escalatedKey) >= 0)) {
      pending = 0; // something new since the last page: fetch its details now to announce it
    } else {
      check(seenKey, newest, "new");
      check(escalatedKey, newestEscalated, "escalated");
    }

    function poll() {
      fetch(summaryUrl + "?poll=1", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401 || response.status === 403) throw new Error("signed out");
          return response.json();
        })
        .then(function (summary) {
          render(summary);
          if (summary.newest) check(seenKey, summary.newest.id, "new", summary.newest);
          if (summary.newest_escalated) check(escalatedKey, summary.newest_escalated.id, "escalated", summary.newest_escalated);
          if (summary.poll_seconds) pollMs = summary.poll_seconds * 1000;
          setTimeout(poll, pollMs);
        })
        .catch(function (error) {
          if (String(error && error.message) !== "signed out") setTimeout(poll, pollMs * 3);
        });
    }
    setTimeout(poll, pending === null ? pollMs : 0);
  }

  /* --- the opt-in on the alerts page ------------------------------------------------------ */
  function setupPrefs() {
    var form = document.getElementById("alert-prefs");
    if (!form) return;
    var sound = document.getElementById("alert-sound");
    var notifyBox = document.getElementById("alert-notify");
    var state = document.getElementById("alert-prefs-state");
    var test = document.getElementById("alert-test");
    var p = prefs();
    sound.checked = !!p.sound;
    notifyBox.checked = !!p.notify && "Notification" in window && Notification.permission === "granted";
    if (!("Notification" in window)) {
      notifyBox.disabled = true;
      state.textContent = "This browser cannot show notifications.";
    }
    form.hidden = false;

    sound.addEventListener("change", function () {
      var current = prefs();
      current.sound = sound.checked;
      savePrefs(current);
      if (sound.checked) chime(1);
      state.textContent = sound.checked ? "Sound on for this computer." : "Sound off.";
    });
    notifyBox.addEventListener("change", function () {
      var current = prefs();
      if (!notifyBox.checked) {
        current.notify = false;
        savePrefs(current);
        state.textContent = "Notifications off.";
        return;
      }
      Notification.requestPermission().then(function (permission) {
        var on = permission === "granted";
        notifyBox.checked = on;
        var latest = prefs();
        latest.notify = on;
        savePrefs(latest);
        state.textContent = on
          ? "Notifications on for this computer."
          : "The browser blocks notifications for this site: allow them in its site settings.";
      });
    });
    test.addEventListener("click", function () {
      var p2 = prefs();
      var played = p2.sound && chime(1);
      var shown = p2.notify && notify("NeoPain test", "This is how a new pain alert will look.", "neopain-test", null);
      state.textContent = played || shown ? "Test sent." : "Turn on the sound or the notification first.";
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
