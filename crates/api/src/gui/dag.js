// A plan drawn as a DAG in SVG: one column per dependency depth (a step sits one
// column right of its deepest dependency), edges from each dependency to its
// dependents, each node coloured and labelled by its live state.

const SVG_NS = 'http://www.w3.org/2000/svg';

export const NODE_WIDTH = 210;
export const NODE_HEIGHT = 66;
const GAP_X = 56;
const GAP_Y = 18;
const PADDING = 14;
/** Longest title shown in a node; the full one is in its tooltip and the step panel. */
const TITLE_CHARS = 27;

export const STATE_LABELS = {
  pending: 'pending',
  awaiting_approval: 'awaiting approval',
  running: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  skipped: 'skipped',
  cancelled: 'cancelled',
};

/** Each step's depth: 0 without dependencies, else one more than its deepest one. */
export function depths(steps) {
  const byId = new Map(steps.map((step) => [step.id, step]));
  const depth = new Map();
  const visiting = new Set();
  const visit = (id) => {
    if (depth.has(id)) return depth.get(id);
    // Plans are validated acyclic; a cycle here must still not hang the page.
    if (visiting.has(id)) return 0;
    visiting.add(id);
    let deepest = 0;
    for (const dependency of byId.get(id)?.depends_on ?? []) {
      if (byId.has(dependency)) deepest = Math.max(deepest, visit(dependency) + 1);
    }
    visiting.delete(id);
    depth.set(id, deepest);
    return deepest;
  };
  for (const step of steps) visit(step.id);
  return depth;
}

/** Where each node goes: columns by depth, rows in plan order within a column. */
export function layout(steps) {
  const depth = depths(steps);
  const columns = [];
  for (const step of steps) {
    const column = depth.get(step.id);
    (columns[column] ??= []).push(step);
  }
  const positions = new Map();
  columns.forEach((column, index) => {
    column.forEach((step, row) => {
      positions.set(step.id, {
        x: PADDING + index * (NODE_WIDTH + GAP_X),
        y: PADDING + row * (NODE_HEIGHT + GAP_Y),
        depth: index,
      });
    });
  });
  const columnCount = Math.max(1, columns.length);
  const rowCount = Math.max(1, ...columns.map((column) => column.length));
  return {
    positions,
    width: 2 * PADDING + columnCount * NODE_WIDTH + (columnCount - 1) * GAP_X,
    height: 2 * PADDING + rowCount * NODE_HEIGHT + (rowCount - 1) * GAP_Y,
  };
}

function element(name, attributes = {}, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function shorten(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

/** Draws `steps` into `svg`; `onSelect(stepId)` on click, Enter or Space. */
export function renderDag(svg, steps, { selected, onSelect }) {
  const { positions, width, height } = layout(steps);
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);

  const defs = element('defs');
  const marker = element('marker', {
    id: 'dag-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  });
  marker.append(element('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'dag-arrow' }));
  defs.append(marker);
  svg.append(defs);

  const edges = element('g', { class: 'dag-edges', 'aria-hidden': 'true' });
  for (const step of steps) {
    const to = positions.get(step.id);
    for (const dependency of step.depends_on ?? []) {
      const from = positions.get(dependency);
      if (!from) continue;
      const x1 = from.x + NODE_WIDTH;
      const y1 = from.y + NODE_HEIGHT / 2;
      const x2 = to.x - 2;
      const y2 = to.y + NODE_HEIGHT / 2;
      const bend = (x2 - x1) / 2;
      edges.append(element('path', {
        d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`,
        class: 'dag-edge',
        'marker-end': 'url(#dag-arrow)',
        'data-testid': `dag-edge-${dependency}-${step.id}`,
        'data-from': dependency,
        'data-to': step.id,
      }));
    }
  }
  svg.append(edges);

  for (const step of steps) {
    const { x, y, depth } = positions.get(step.id);
    const state = step.state ?? 'pending';
    const label = STATE_LABELS[state] ?? state;
    const node = element('g', {
      class: `dag-node state-${state}${step.id === selected ? ' selected' : ''}`,
      transform: `translate(${x} ${y})`,
      role: 'button',
      tabindex: 0,
      'aria-pressed': step.id === selected ? 'true' : 'false',
      'aria-label': `Step ${step.id}: ${step.title}. ${label}${step.mutating ? ', changes the cluster' : ''}`,
      'data-testid': `dag-node-${step.id}`,
      'data-step-id': step.id,
      'data-state': state,
      'data-depth': depth,
      'data-x': x,
    });
    node.append(element('title', {}, `${step.title} (${step.id}, ${step.tool}): ${label}`));
    node.append(element('rect', { class: 'dag-box', width: NODE_WIDTH, height: NODE_HEIGHT, rx: 8 }));
    node.append(element('rect', { class: 'dag-bar', width: 6, height: NODE_HEIGHT, rx: 3 }));
    node.append(element('text', { class: 'dag-title', x: 16, y: 21 }, shorten(step.title, TITLE_CHARS)));
    node.append(element('text', { class: 'dag-meta', x: 16, y: 39 }, shorten(`${step.id} · ${step.tool}`, 32)));
    node.append(element('text', { class: 'dag-state', x: 16, y: 57 },
      `${label}${step.mutating ? ' · writes' : ''}`));
    node.addEventListener('click', () => onSelect(step.id));
    node.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        onSelect(step.id);
      }
    });
    svg.append(node);
  }
}
