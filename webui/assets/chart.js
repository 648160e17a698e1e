// Hand-drawn SVG charts: a line chart with axes and legend, and a sparkline. Each trace
// has its own line style and point marker besides its colour, so the traces stay apart
// for colour-blind readers and in greyscale print.

const SVG = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) if (child) el.append(child);
  return el;
}

/** Line styles, in the order traces take them. */
export const STYLES = [
  { dash: '', marker: 'circle', cls: 'trace-0' },
  { dash: '7 4', marker: 'square', cls: 'trace-1' },
  { dash: '2 3', marker: 'triangle', cls: 'trace-2' },
];

function marker(shape, x, y, r = 3.5) {
  switch (shape) {
    case 'square':
      return s('rect', { x: x - r, y: y - r, width: 2 * r, height: 2 * r });
    case 'triangle':
      return s('path', { d: `M${x} ${y - r - 1}L${x + r + 1} ${y + r}L${x - r - 1} ${y + r}Z` });
    default:
      return s('circle', { cx: x, cy: y, r });
  }
}

/** A round tick step near `raw`: 1, 2 or 5 times a power of ten. */
function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const step of [1, 2, 5]) if (step * power >= raw) return step * power;
  return 10 * power;
}

/** Tick values from 0 up to a round top at or above `max`, about four steps. */
function ticks(max, integers) {
  let step = max > 0 ? niceStep(max / 4) : 1;
  if (integers) step = Math.max(1, Math.round(step));
  const top = Math.max(step, Math.ceil(max / step - 1e-9) * step);
  const out = [];
  for (let v = 0; v <= top + step / 2; v += step) out.push(+v.toFixed(6));
  return out;
}

function fmtTick(value) {
  if (value >= 1000) return `${+(value / 1000).toFixed(1)}k`;
  return Number.isInteger(value) ? String(value) : String(+value.toFixed(2));
}

/**
 * A line chart of `points` (oldest first, each with `t_ms`) for the given `traces`
 * ({key, label}); `width` in CSS pixels. Returns a figure holding the SVG and a legend.
 */
export function lineChart({
  title, points, traces, width, height = 200, windowMs = 60000, integers = false,
}) {
  const pad = { left: 44, right: 12, top: 10, bottom: 24 };
  const w = Math.max(240, Math.floor(width));
  const plotW = w - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;

  const end = points.length ? points[points.length - 1].t_ms : Date.now();
  const start = end - windowMs;
  const maxValue = Math.max(0, ...points.flatMap((p) => traces.map((t) => Number(p[t.key]) || 0)));
  const marks = ticks(maxValue, integers);
  const top = marks[marks.length - 1];
  const x = (t) => pad.left + ((t - start) / windowMs) * plotW;
  const y = (v) => pad.top + plotH - (v / top) * plotH;

  const last = points[points.length - 1];
  const summary = traces
    .map((t) => `${t.label} ${last ? fmtTick(Number(last[t.key]) || 0) : 'no data'}`)
    .join(', ');
  const svg = s('svg', {
    class: 'chart', width: w, height, viewBox: `0 0 ${w} ${height}`,
    role: 'img', 'aria-label': `${title}, last 60 seconds: ${summary}`,
  });

  const grid = s('g', { class: 'grid' });
  for (const value of marks) {
    grid.append(
      s('line', { x1: pad.left, x2: w - pad.right, y1: y(value), y2: y(value) }),
      s('text', { x: pad.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, fmtTick(value)),
    );
  }
  for (const secondsAgo of [60, 45, 30, 15, 0]) {
    const label = secondsAgo ? `-${secondsAgo}s` : 'now';
    const anchor = secondsAgo === 60 ? 'start' : secondsAgo === 0 ? 'end' : 'middle';
    grid.append(s('text', {
      x: x(end - secondsAgo * 1000), y: height - 6, 'text-anchor': anchor,
    }, label));
  }
  svg.append(grid);

  if (!points.length) {
    svg.append(s('text', { class: 'empty', x: w / 2, y: height / 2, 'text-anchor': 'middle' },
      'waiting for samples…'));
  }

  // Markers on every point would blur into a thick line: about a dozen per trace, always
  // including the newest, keep them legible.
  const every = Math.max(1, Math.ceil(points.length / 12));
  traces.forEach((trace, i) => {
    const style = STYLES[i % STYLES.length];
    const g = s('g', { class: `trace ${style.cls}`, 'data-trace': trace.key });
    const coords = points.map((p) => [x(p.t_ms), y(Number(p[trace.key]) || 0)]);
    if (coords.length) {
      const d = coords.map(([px, py], j) => `${j ? 'L' : 'M'}${px.toFixed(1)} ${py.toFixed(1)}`);
      g.append(s('path', { class: 'line', d: d.join(''), 'stroke-dasharray': style.dash }));
    }
    const dots = s('g', { class: 'marks' });
    coords.forEach(([px, py], j) => {
      if ((coords.length - 1 - j) % every === 0) dots.append(marker(style.marker, px, py));
    });
    g.append(dots);
    svg.append(g);
  });

  const legend = document.createElement('ul');
  legend.className = 'legend';
  traces.forEach((trace, i) => {
    const style = STYLES[i % STYLES.length];
    const sample = s('svg',
      { width: 34, height: 12, class: `trace ${style.cls}`, 'aria-hidden': 'true' },
      s('path', { class: 'line', d: 'M1 6L33 6', 'stroke-dasharray': style.dash }),
      s('g', { class: 'marks' }, marker(style.marker, 17, 6)));
    const item = document.createElement('li');
    const value = last ? fmtTick(Number(last[trace.key]) || 0) : '–';
    item.append(sample, ` ${trace.label}: `, Object.assign(document.createElement('b'),
      { textContent: value }));
    legend.append(item);
  });

  const figure = document.createElement('figure');
  figure.className = 'chart-figure';
  const caption = document.createElement('figcaption');
  caption.textContent = title;
  figure.append(caption, svg, legend);
  return figure;
}

/**
 * A small trend line of `points` (oldest first, each with `t_ms`), plotting `key` over
 * the last minute: a young queue's line starts part-way along, as its history does.
 */
export function sparkline(points, key, label, width = 120, height = 28, windowMs = 60000) {
  const values = points.map((p) => Number(p[key]) || 0);
  const svg = s('svg', {
    class: 'spark', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': values.length
      ? `${label}: from ${values[0]} to ${values[values.length - 1]} over the last minute`
      : `${label}: no samples yet`,
  });
  // A faint floor across the whole minute, so a young queue's short line reads as recent.
  svg.append(s('line', { class: 'floor', x1: 2, x2: width - 4, y1: height - 3, y2: height - 3 }));
  if (!values.length) return svg;

  const end = points[points.length - 1].t_ms;
  const top = Math.max(1, ...values);
  const x = (t) => 2 + Math.max(0, 1 - (end - t) / windowMs) * (width - 6);
  const coords = points.map((p, i) => [x(p.t_ms), height - 3 - (values[i] / top) * (height - 6)]);
  const d = coords.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)} ${py.toFixed(1)}`);
  const [lx, ly] = coords[coords.length - 1];
  svg.append(s('path', { d: d.join('') }), s('circle', { cx: lx, cy: ly, r: 2.5 }));
  return svg;
}
