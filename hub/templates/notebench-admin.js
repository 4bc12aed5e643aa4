// The admin page's script (included by notebench-admin.html; Jinja reads it, so it never holds
// a double brace). Calls the executor's API as the admin with the page's token.
(function () {
  "use strict";
  var config = window.notebenchAdmin;
  var QUANTITIES = [
    ["gpus", "GPUs in use"],
    ["gpu_hours_per_day", "GPU-hours per rolling day"],
    ["cpu", "CPU cores in use"],
    ["memory", "Memory in use (GiB)"],
    ["running_jobs", "Running jobs"],
    ["queued_jobs", "Queued jobs"],
    ["dask_workers", "Dask workers per job"],
    ["endpoints", "Endpoints"],
  ];
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e"];
  var SVG = "http://www.w3.org/2000/svg";

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (key) {
      node.setAttribute(key, attrs[key]);
    });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // An executor API call: resolves to {status, body}; never throws for an HTTP error.
  function api(method, path, body) {
    var options = { method: method, headers: { Authorization: "token " + config.token } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(config.api + path, options).then(function (response) {
      return response.text().then(function (text) {
        var parsed = null;
        try {
          parsed = text ? JSON.parse(text) : null;
        } catch (e) {
          parsed = { message: text.slice(0, 200) };
        }
        if (response.status === 401) {
          showAlert("This page's access to the executor has expired: reload the page.");
        }
        return { status: response.status, body: parsed };
      });
    });
  }

  function failure(result) {
    return (result.body && result.body.message) || "the executor answered " + result.status;
  }

  function showAlert(message) {
    var alert = $("nb-admin-alert");
    alert.textContent = message;
    alert.hidden = false;
  }

  function fillTable(table, rows, columns, emptyText) {
    var tbody = table.querySelector("tbody");
    tbody.textContent = "";
    if (!rows.length) {
      tbody.appendChild(el("tr", {}, [el("td", { colspan: String(columns), text: emptyText })]));
      return;
    }
    rows.forEach(function (cells) {
      tbody.appendChild(
        el(
          "tr",
          {},
          cells.map(function (cell) {
            return cell instanceof Node ? el("td", {}, [cell]) : el("td", { text: cell === null || cell === undefined ? "—" : String(cell) });
          })
        )
      );
    });
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, "") : "—";
  }

  // --- what runs now -------------------------------------------------------------------------

  function loadJobs() {
    var table = $("nb-jobs");
    return Promise.all([api("GET", "jobs?status=running&limit=200"), api("GET", "jobs?status=queued&limit=200")]).then(function (results) {
      var bad = results.filter(function (r) {
        return r.status !== 200;
      });
      if (bad.length) {
        fillTable(table, [], 7, "Jobs could not be listed: " + failure(bad[0]));
        return [];
      }
      var jobs = results[0].body.jobs.concat(results[1].body.jobs);
      fillTable(
        table,
        jobs.map(function (job) {
          return ["#" + job.id, job.owner, job.name, job.status, job.profile, job.workers || "—", when(job.created_at)];
        }),
        7,
        "No job runs or waits now."
      );
      table.querySelectorAll("tbody tr").forEach(function (row, i) {
        if (jobs[i]) row.setAttribute("data-job", String(jobs[i].id));
      });
      return jobs;
    });
  }

  function loadEndpoints() {
    var table = $("nb-endpoints");
    return api("GET", "endpoints").then(function (result) {
      if (result.status !== 200) {
        fillTable(table, [], 6, "Endpoints could not be listed: " + failure(result));
        return;
      }
      fillTable(
        table,
        result.body.endpoints.map(function (ep) {
          var versions = (ep.versions || [])
            .map(function (v) {
              return v.model + " v" + v.version + (v.weight !== undefined ? " (" + v.weight + "%)" : "");
            })
            .join(", ");
          return [ep.name, ep.owner, ep.status, ep.profile, versions || "—", when(ep.updated_at)];
        }),
        6,
        "No endpoint is deployed."
      );
    });
  }

  // A job's GPU lease names the job only: its owner comes from the jobs list.
  function ownersOfJobLeases(jobs) {
    var owners = {};
    jobs.forEach(function (job) {
      owners["job:" + job.id] = job.owner;
    });
    document.querySelectorAll("#nb-leases tr[data-holder]").forEach(function (row) {
      var cell = row.querySelector(".nb-lease-owner");
      var holder = row.getAttribute("data-holder");
      if (cell.textContent === "…") cell.textContent = owners[holder] || "unknown";
    });
  }

  // --- usage charts ----------------------------------------------------------------------------

  var METRICS = {
    gpu_hours: { label: "GPU-hours", value: function (r) { return r.gpu_hours; } },
    cpu_hours_requested: { label: "CPU-hours requested", value: function (r) { return r.cpu_seconds_requested === null ? null : r.cpu_seconds_requested / 3600; } },
    cpu_hours_used: { label: "CPU-hours used", value: function (r) { return r.cpu_seconds_used === null || r.cpu_seconds_used === undefined ? null : r.cpu_seconds_used / 3600; } },
    memory_gb_hours: { label: "Memory GB-hours", value: function (r) { return r.memory_gb_hours; } },
    cost: { label: "Cost", value: function (r) { return r.cost; } },
  };

  function isoDay(date) {
    return date.toISOString().slice(0, 10);
  }

  // {series name: {day: total}} from the usage rows, keyed by user or by each of the row's groups.
  function aggregate(rows, keysOf, metric) {
    var series = {};
    rows.forEach(function (row) {
      var value = metric.value(row);
      if (value === null || value === undefined || isNaN(value)) return;
      keysOf(row).forEach(function (key) {
        series[key] = series[key] || {};
        series[key][row.day] = (series[key][row.day] || 0) + value;
      });
    });
    return series;
  }

  function round(x) {
    return Math.round(x * 100) / 100;
  }

  // Stacked bars, one per day, one colour per user or group; a legend and the same numbers as a table.
  function drawChart(container, title, days, series, unit) {
    container.textContent = "";
    var names = Object.keys(series).sort();
    if (!names.length) {
      container.appendChild(el("p", { text: "No " + unit + " in this period." }));
      return;
    }
    var totals = days.map(function (day) {
      return names.reduce(function (sum, name) {
        return sum + (series[name][day] || 0);
      }, 0);
    });
    var max = Math.max.apply(null, totals.concat([0])) || 1;
    var barWidth = 18, gap = 6, left = 56, top = 10, height = 180, bottom = 40;
    var width = left + days.length * (barWidth + gap) + 10;
    var titleId = container.id + "-title";
    var chart = svg("svg", { width: width, height: top + height + bottom, role: "img", "aria-labelledby": titleId });
    chart.appendChild(svg("title", { id: titleId }, title + ": " + names.length + " series over " + days.length + " days, at most " + round(max) + " " + unit + " a day"));
    chart.appendChild(svg("line", { x1: left, y1: top + height, x2: width - 5, y2: top + height, stroke: "#555" }));
    chart.appendChild(svg("text", { x: left - 6, y: top + 10, "text-anchor": "end", "font-size": 11 }, String(round(max))));
    chart.appendChild(svg("text", { x: left - 6, y: top + height, "text-anchor": "end", "font-size": 11 }, "0"));
    days.forEach(function (day, i) {
      var x = left + i * (barWidth + gap);
      var y = top + height;
      names.forEach(function (name, j) {
        var value = series[name][day] || 0;
        if (!value) return;
        var h = (value / max) * height;
        y -= h;
        var bar = svg("rect", { x: x, y: y, width: barWidth, height: Math.max(h, 0.5), fill: COLORS[j % COLORS.length] });
        bar.appendChild(svg("title", {}, name + ", " + day + ": " + round(value) + " " + unit));
        chart.appendChild(bar);
      });
      if (i % Math.ceil(days.length / 10) === 0) {
        chart.appendChild(svg("text", { x: x + barWidth / 2, y: top + height + 14, "text-anchor": "middle", "font-size": 10 }, day.slice(5)));
      }
    });
    container.appendChild(chart);
    container.appendChild(
      el(
        "ul",
        { class: "nb-legend", "aria-label": "Legend" },
        names.map(function (name, j) {
          return el("li", {}, [el("span", { class: "nb-swatch", style: "background:" + COLORS[j % COLORS.length], "aria-hidden": "true" }), name]);
        })
      )
    );
    var table = el("table", { class: "table table-sm" }, [
      el("caption", { text: title + ": totals over the period" }),
      el("thead", {}, [el("tr", {}, [el("th", { scope: "col", text: "Name" }), el("th", { scope: "col", text: "Total" })])]),
      el(
        "tbody",
        {},
        names.map(function (name) {
          var total = Object.keys(series[name]).reduce(function (sum, day) {
            return sum + series[name][day];
          }, 0);
          return el("tr", {}, [el("th", { scope: "row", text: name }), el("td", { text: String(round(total)) })]);
        })
      ),
    ]);
    container.appendChild(el("details", {}, [el("summary", { text: "The numbers" }), table]));
  }

  var usageRows = null;

  function drawUsage(daysBack) {
    var metric = METRICS[$("nb-usage-metric").value];
    var days = [];
    for (var i = daysBack - 1; i >= 0; i--) days.push(isoDay(new Date(Date.now() - i * 86400000)));
    var inPeriod = usageRows.filter(function (r) {
      return r.day >= days[0];
    });
    var byUser = aggregate(inPeriod, function (r) { return [r.user]; }, metric);
    var byGroup = aggregate(inPeriod, function (r) { return r.groups && r.groups.length ? r.groups : ["(no group)"]; }, metric);
    drawChart($("nb-usage-users"), metric.label + " per user", days, byUser, metric.label);
    drawChart($("nb-usage-groups"), metric.label + " per group", days, byGroup, metric.label);
    $("nb-usage-charts").hidden = false;
  }

  function loadUsage() {
    var daysBack = Number($("nb-usage-days").value);
    var status = $("nb-usage-status");
    var since = isoDay(new Date(Date.now() - (daysBack - 1) * 86400000));
    status.textContent = "Loading…";
    return api("GET", "usage?since=" + since).then(function (result) {
      // An executor without the usage API (an older one) answers 404.
      if (result.status === 404) {
        status.textContent = "Usage is not available: this executor does not record usage.";
        $("nb-usage-charts").hidden = true;
        return;
      }
      if (result.status !== 200 || !result.body || !Array.isArray(result.body.rows)) {
        status.textContent = "Usage could not be read: " + failure(result);
        $("nb-usage-charts").hidden = true;
        return;
      }
      usageRows = result.body.rows;
      status.textContent = usageRows.length + " usage records since " + since + ".";
      drawUsage(daysBack);
    });
  }

  // --- quotas ----------------------------------------------------------------------------------

  var quotaTarget = null; // {kind, name} being edited

  function quotaField(key, label, quota) {
    var own = quota.set || {};
    var input = el("input", { id: "nb-q-" + key, name: key, class: "form-control", inputmode: "decimal", autocomplete: "off", "aria-describedby": "nb-q-" + key + "-now nb-q-" + key + "-error" });
    var unlimited = el("input", { id: "nb-q-" + key + "-unlimited", type: "checkbox", class: "form-check-input" });
    if (key in own) {
      if (own[key] === null) unlimited.checked = true;
      else input.value = String(own[key]);
    }
    input.disabled = unlimited.checked;
    unlimited.addEventListener("change", function () {
      input.disabled = unlimited.checked;
    });
    var applies = quota[key] === null ? "unlimited" : String(quota[key]);
    var source = (quota.source || {})[key];
    var used = quota.usage && key in quota.usage ? "; in use: " + quota.usage[key] : "";
    return el("div", { class: "nb-quota-field", "data-quantity": key }, [
      el("label", { for: input.id, class: "form-label", text: label }),
      input,
      el("div", { class: "form-check" }, [unlimited, el("label", { for: unlimited.id, class: "form-check-label", text: "unlimited" })]),
      el("div", { id: input.id + "-now", class: "form-text", text: "Applies now: " + applies + (source ? " (" + source + ")" : "") + used }),
      el("div", { id: input.id + "-error", class: "invalid-feedback" }),
    ]);
  }

  function showQuota(quota) {
    var fields = $("nb-quota-fields");
    fields.textContent = "";
    QUANTITIES.forEach(function (q) {
      fields.appendChild(quotaField(q[0], q[1], quota));
    });
    $("nb-quota-title").textContent = "Quotas of " + quota.kind + " " + quota.name;
    $("nb-quota-form").hidden = false;
  }

  function lookUpQuota(event) {
    event.preventDefault();
    var kind = $("nb-quota-kind").value;
    var name = $("nb-quota-name").value.trim();
    var status = $("nb-quota-lookup-status");
    if (!name) {
      status.textContent = "Give a name to look up.";
      return;
    }
    status.textContent = "Loading…";
    $("nb-quota-status").textContent = "";
    api("GET", "quotas/" + kind + "/" + encodeURIComponent(name)).then(function (result) {
      if (result.status !== 200) {
        status.textContent = "Could not read the quotas of " + name + ": " + failure(result);
        $("nb-quota-form").hidden = true;
        return;
      }
      status.textContent = "";
      quotaTarget = { kind: kind, name: name };
      showQuota(result.body);
    });
  }

  function clearFieldErrors() {
    document.querySelectorAll("#nb-quota-fields input.is-invalid").forEach(function (input) {
      input.classList.remove("is-invalid");
      input.removeAttribute("aria-invalid");
    });
    document.querySelectorAll("#nb-quota-fields .invalid-feedback").forEach(function (div) {
      div.textContent = "";
    });
  }

  function fieldError(key, message) {
    var input = $("nb-q-" + key);
    if (!input) return false;
    input.classList.add("is-invalid");
    input.setAttribute("aria-invalid", "true");
    $("nb-q-" + key + "-error").textContent = message;
    input.focus();
    return true;
  }

  function saveQuota(event) {
    event.preventDefault();
    clearFieldErrors();
    var status = $("nb-quota-status");
    var body = {};
    var bad = null;
    QUANTITIES.forEach(function (q) {
      var key = q[0];
      if ($("nb-q-" + key + "-unlimited").checked) {
        body[key] = null;
        return;
      }
      var text = $("nb-q-" + key).value.trim();
      if (text === "") return; // inherited
      var number = Number(text);
      if (isNaN(number) && !bad) bad = key;
      body[key] = number;
    });
    if (bad) {
      fieldError(bad, "Give a number, or leave it empty to inherit.");
      status.textContent = "Not saved: see the field.";
      return;
    }
    status.textContent = "Saving…";
    var target = quotaTarget;
    api("PUT", "quotas/" + target.kind + "/" + encodeURIComponent(target.name), body).then(function (result) {
      if (result.status === 200) {
        showQuota(result.body);
        status.textContent = "Saved.";
        loadAudit(false);
        return;
      }
      var field = result.body && result.body.field;
      if (!(field && fieldError(field.split(".")[0], failure(result)))) {
        status.textContent = "Not saved: " + failure(result);
        return;
      }
      status.textContent = "Not saved: see the field.";
    });
  }

  // --- audit log --------------------------------------------------------------------------------

  var auditCursor = null;

  function auditQuery() {
    var params = [["limit", "50"]];
    var user = $("nb-audit-user").value.trim();
    var action = $("nb-audit-action").value.trim();
    var since = $("nb-audit-since").value;
    if (user) params.push(["user", user]);
    if (action) params.push(["action", action]);
    if (since) params.push(["since", since + "T00:00:00Z"]);
    return params
      .map(function (p) {
        return p[0] + "=" + encodeURIComponent(p[1]);
      })
      .join("&");
  }

  function auditRow(entry) {
    var detail = Object.keys(entry.detail || {}).length ? JSON.stringify(entry.detail) : "—";
    var row = el("tr", { "data-action": entry.action }, [
      el("td", { text: when(entry.at) }),
      el("td", { text: entry.actor }),
      el("td", { text: entry.action }),
      el("td", { text: entry.target }),
      el("td", { text: entry.owner || "—" }),
      el("td", {}, [el("code", { class: "nb-detail", text: detail })]),
    ]);
    return row;
  }

  function loadAudit(more) {
    var table = $("nb-audit-log");
    var tbody = table.querySelector("tbody");
    ["action", "since"].forEach(function (name) {
      $("nb-audit-" + name).classList.remove("is-invalid");
      $("nb-audit-" + name + "-error").textContent = "";
    });
    var query = auditQuery() + (more && auditCursor ? "&cursor=" + encodeURIComponent(auditCursor) : "");
    return api("GET", "audit?" + query).then(function (result) {
      if (result.status !== 200) {
        var field = result.body && result.body.field;
        if (field === "action" || field === "since") {
          $("nb-audit-" + field).classList.add("is-invalid");
          $("nb-audit-" + field + "-error").textContent = failure(result);
        }
        fillTable(table, [], 6, "The audit log could not be read: " + failure(result));
        return;
      }
      if (!more) tbody.textContent = "";
      result.body.entries.forEach(function (entry) {
        tbody.appendChild(auditRow(entry));
      });
      if (!tbody.children.length) fillTable(table, [], 6, "No entry matches.");
      auditCursor = result.body.next_cursor;
      $("nb-audit-more").hidden = !auditCursor;
    });
  }

  // --- start -----------------------------------------------------------------------------------

  document.querySelectorAll("time.nb-time").forEach(function (node) {
    var at = new Date(node.getAttribute("datetime"));
    if (!isNaN(at)) node.textContent = at.toLocaleString();
  });
  $("nb-quota-lookup").addEventListener("submit", lookUpQuota);
  $("nb-quota-form").addEventListener("submit", saveQuota);
  $("nb-usage-form").addEventListener("submit", function (event) {
    event.preventDefault();
    loadUsage();
  });
  $("nb-usage-metric").addEventListener("change", function () {
    if (usageRows) drawUsage(Number($("nb-usage-days").value));
  });
  $("nb-audit-form").addEventListener("submit", function (event) {
    event.preventDefault();
    loadAudit(false);
  });
  $("nb-audit-more").addEventListener("click", function () {
    loadAudit(true);
  });
  loadJobs().then(ownersOfJobLeases);
  loadEndpoints();
  loadUsage();
  loadAudit(false);
})();
