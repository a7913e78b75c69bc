// Steward dashboard: a campaign's page follows the event stream. When an
// event concerns this campaign (a device reported, a wave started, the
// campaign changed, its release was invalidated), the changing part of
// the page is fetched again from the server and swapped in place, so the
// numbers, the chart and the device table stay the server's own.
(function () {
  'use strict';
  // The campaign list: rows are made again from the page itself when a
  // campaign or a device in one changes (the page is short: one page of
  // campaigns).
  var table = document.getElementById('campaign-table');
  if (table) {
    var listTimer = null;
    var reloadRows = function () {
      fetch(location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
        .then(function (r) { if (!r.ok) { throw new Error('status ' + r.status); } return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, 'text/html');
          var rows = doc.querySelector('#campaign-table tbody');
          if (rows) {
            table.querySelector('tbody').replaceWith(rows);
            table.setAttribute('data-updates', String(Number(table.getAttribute('data-updates') || '0') + 1));
          }
        })
        .catch(function () { /* the next event tries again */ });
    };
    document.addEventListener('steward:event', function (e) {
      var ev = e.detail || {};
      if (ev.type && (ev.type.indexOf('campaign.') === 0 || ev.type.indexOf('ota.') === 0 || ev.type === 'artifact.invalidated')) {
        clearTimeout(listTimer);
        listTimer = setTimeout(reloadRows, 300);
      }
    });
  }

  var root = document.getElementById('campaign-live');
  if (!root) { return; }
  var id = root.getAttribute('data-campaign');
  var artifact = root.getAttribute('data-artifact');
  var timer = null, busy = false, again = false;

  var announce = function (text) {
    var region = document.getElementById('live-region');
    if (region && text) { region.textContent = text; }
  };

  // A part with an open confirmation or a field being typed in is left
  // alone (and updated at the next change), so nobody loses what they typed.
  var inUse = function (el) {
    if (el.querySelector('details[open]')) { return true; }
    var a = document.activeElement;
    return !!(a && el.contains(a) && (a.tagName === 'INPUT' || a.tagName === 'TEXTAREA' || a.tagName === 'SELECT'));
  };

  var refresh = function () {
    if (busy) { again = true; return; }
    busy = true;
    fetch(root.getAttribute('data-live-url'), { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
      .then(function (r) {
        if (!r.ok) { throw new Error('status ' + r.status); }
        return r.text();
      })
      .then(function (html) {
        var tpl = document.createElement('template');
        tpl.innerHTML = html;
        var swapped = 0;
        tpl.content.querySelectorAll('[data-live-part]').forEach(function (part) {
          var name = part.getAttribute('data-live-part');
          var cur = root.querySelector('[data-live-part="' + name + '"]');
          if (!cur || inUse(cur)) { return; }
          cur.replaceWith(part);
          swapped++;
          if (name === 'summary') { announce(part.getAttribute('data-announce')); }
        });
        if (swapped) {
          root.setAttribute('data-updates', String(Number(root.getAttribute('data-updates') || '0') + 1));
        }
      })
      .catch(function () { /* the next event tries again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  };
  var schedule = function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 150);
  };

  document.addEventListener('steward:event', function (e) {
    var ev = e.detail || {};
    var data = ev.data || {};
    if (ev.subject === id || data.campaign_id === id || (artifact && data.artifact_id === artifact)) {
      schedule();
    }
  });
})();
