// Steward dashboard: small progressive enhancements. Every page works
// without this file; with it, pages follow live events (state badges
// change in place) and a few forms get friendlier.
(function () {
  'use strict';

  var announce = function (text) {
    var region = document.getElementById('live-region');
    if (region) { region.textContent = text; }
  };

  var label = function (state) { return state === 'end_of_support' ? 'end of support' : state; };

  // Tenant switcher: switch on change (the button stays for keyboards and no-JS).
  document.querySelectorAll('form[data-autosubmit] select').forEach(function (sel) {
    sel.addEventListener('change', function () { sel.form.submit(); });
  });

  // Filter forms leave empty fields out of the address, so it stays short
  // enough to read and share.
  document.querySelectorAll('form.filters').forEach(function (form) {
    form.addEventListener('submit', function () {
      form.querySelectorAll('input, select').forEach(function (el) {
        if (el.name && el.value === '') { el.disabled = true; }
      });
    });
  });
  window.addEventListener('pageshow', function () {
    document.querySelectorAll('form.filters [disabled]').forEach(function (el) { el.disabled = false; });
  });

  // Secrets shown once: select the whole value on focus, for copying.
  document.querySelectorAll('input[data-select]').forEach(function (input) {
    input.addEventListener('focus', function () { input.select(); });
  });

  // An opened confirmation puts the cursor in its first field.
  document.querySelectorAll('details.action').forEach(function (d) {
    d.addEventListener('toggle', function () {
      if (!d.open) { return; }
      var field = d.querySelector('textarea, input:not([type=hidden])');
      if (field) { field.focus(); }
    });
  });

  // ---- live updates over Server-Sent Events ----
  var body = document.body;
  if (!body.hasAttribute('data-live-after') || !window.EventSource) { return; }
  var status = document.getElementById('live-status');
  var setStatus = function (state, text) {
    if (status) { status.setAttribute('data-state', state); status.textContent = text; }
  };
  var showNotice = function () {
    var n = document.getElementById('live-notice');
    if (n) { n.hidden = false; }
  };

  // Online markers: a device's "last seen" cells and its My home status.
  var connection = function (id, online) {
    var changed = 0;
    document.querySelectorAll('[data-device-seen="' + CSS.escape(id) + '"]').forEach(function (el) {
      var mark = document.createElement('span');
      mark.className = 'conn changed ' + (online ? 'conn-online' : 'conn-offline');
      mark.textContent = online ? 'online now' : 'offline, last seen just now';
      el.replaceChildren(mark);
      el.setAttribute('data-online', online ? 'yes' : 'no');
      changed++;
    });
    document.querySelectorAll('[data-device-home="' + CSS.escape(id) + '"]').forEach(function (el) {
      // Quarantined, suspended, retired or unsupported says more than online.
      if (/^(quarantined|suspended|decommissioned|end_of_support)$/.test(el.getAttribute('data-home-state'))) { return; }
      el.textContent = online ? 'connected' : 'offline since just now';
      el.classList.toggle('warn', !online);
      el.setAttribute('data-online', online ? 'yes' : 'no');
      changed++;
    });
    if (changed) { announce('Device ' + id + (online ? ' is online.' : ' went offline.')); }
  };

  // The navigation's count of open alarms: raised adds one, cleared takes
  // one away (acknowledged ones are still open). Past its cap it stays.
  var countAlarms = function (delta) {
    var c = document.getElementById('nav-alarms');
    if (!c || c.hasAttribute('data-more')) { return; }
    var n = Math.max(0, (parseInt(c.getAttribute('data-open-alarms'), 10) || 0) + delta);
    c.setAttribute('data-open-alarms', String(n));
    c.firstChild.nodeValue = String(n);
    c.hidden = n === 0;
    c.classList.remove('changed');
    void c.offsetWidth; // restart the highlight
    c.classList.add('changed');
  };

  var handlers = {
    'device.state_changed': function (ev) {
      var d = ev.data || {};
      var changed = 0;
      document.querySelectorAll('[data-device-state="' + CSS.escape(ev.subject) + '"]').forEach(function (b) {
        // A page made after the change already shows it.
        if (b.textContent.trim() === label(d.to)) { return; }
        b.textContent = label(d.to);
        b.className = 'badge state-' + d.to + ' changed';
        changed++;
      });
      if (changed) {
        announce('Device ' + ev.subject + ' is now ' + label(d.to) + '.');
        // The actions offered were for the old state.
        if (document.getElementById('device-actions')) { showNotice(); }
      }
      if (document.getElementById('chart-states')) { showNotice(); }
    },
    'device.created': function () {
      if (document.getElementById('device-table') || document.getElementById('chart-states')) { showNotice(); }
    },
    'device.connected': function (ev) { connection(ev.subject, true); },
    'device.disconnected': function (ev) { connection(ev.subject, false); },
    'alarm.raised': function (ev) {
      var a = ev.data || {};
      countAlarms(1);
      var n = document.getElementById('alarm-notice');
      var dev = n && n.getAttribute('data-device');
      if (n && (!dev || dev === a.device_id)) { n.hidden = false; }
      announce('New ' + (a.severity ? a.severity + ' ' : '') + 'alarm: ' + (a.title || 'a device misbehaves') + '.');
    },
    'alarm.cleared': function () { countAlarms(-1); },
    'device.deleted': function (ev) {
      document.querySelectorAll('[data-device-state="' + CSS.escape(ev.subject) + '"]').forEach(function (b) {
        b.textContent = 'deleted';
        b.className = 'badge changed';
      });
    }
  };

  var es = new EventSource('/ui/events?after=' + encodeURIComponent(body.getAttribute('data-live-after')));
  es.onopen = function () { setStatus('live', 'live'); };
  es.onerror = function () { setStatus('connecting', 'reconnecting…'); };
  es.onmessage = function (m) {
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    var h = handlers[ev.type];
    if (h) { h(ev); }
    document.dispatchEvent(new CustomEvent('steward:event', { detail: ev }));
  };
  window.addEventListener('pagehide', function () { es.close(); });
})();
