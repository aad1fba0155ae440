/*
 * gpuhub-cull-warning: a JupyterLab 4 federated extension, written by hand (no bundler:
 * it imports nothing, so its module-federation container is a few lines). It asks the
 * user's server (gpuhub_busy's GET <server>/gpuhub/cull, which asks the hub) every
 * minute while the tab is visible, and shows the hub's warning as a JupyterLab
 * notification with "Keep it running" (POST <server>/gpuhub/cull: activity).
 */
(function () {
  'use strict';
  var NAME = 'gpuhub-cull-warning';
  var EVERY_MS = 60000;
  var KEEP = 'gpuhub:keep-server';

  function xsrf() {
    var match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : '';
  }

  var plugin = {
    id: NAME + ':plugin',
    description: 'Warns before the idle culler stops this server.',
    autoStart: true,
    activate: function (app) {
      var settings = app.serviceManager.serverSettings;
      var url = settings.baseUrl.replace(/\/?$/, '/') + 'gpuhub/cull';
      var shown = null;
      var current = ''; // the deadline warned of ('' none): a new one is shown anew

      function call(method) {
        var headers = { 'X-XSRFToken': xsrf() };
        if (settings.token) {
          headers.Authorization = 'token ' + settings.token;
        }
        return window
          .fetch(url, { method: method, headers: headers, credentials: 'same-origin' })
          .then(function (reply) {
            return reply.json();
          });
      }

      function show(answer) {
        var warning = (answer && answer.warning) || '';
        var deadline = warning ? answer.deadline : '';
        document.body.dataset.gpuhubCullWarning = warning;
        if (deadline === current) {
          return;
        }
        if (shown !== null) {
          app.commands.execute('apputils:dismiss-notification', { id: shown });
          shown = null;
        }
        current = deadline;
        if (!warning) {
          return;
        }
        var actions = answer.keepable
          ? [{ label: 'Keep it running', commandId: KEEP, displayType: 'accent' }]
          : [];
        Promise.resolve(
          app.commands.execute('apputils:notify', {
            message: warning,
            type: 'warning',
            options: { autoClose: false, actions: actions }
          })
        ).then(function (id) {
          shown = id;
        });
      }

      function check() {
        if (document.visibilityState === 'hidden') {
          return;
        }
        call('GET').then(show, function (err) {
          console.warn('gpuhub: no cull warning', err);
        });
      }

      app.commands.addCommand(KEEP, {
        label: 'Keep this server running',
        execute: function () {
          return call('POST').then(function () {
            window.setTimeout(check, 20000);
          });
        }
      });
      app.restored.then(check);
      window.setInterval(check, EVERY_MS);
      document.addEventListener('visibilitychange', check);
    }
  };

  var container = {
    init: function () {
      return Promise.resolve();
    },
    get: function (module) {
      if (module !== './extension') {
        return Promise.reject(new Error(NAME + ' has no module ' + module));
      }
      return Promise.resolve(function () {
        return { __esModule: true, default: [plugin] };
      });
    }
  };
  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = container;
})();
