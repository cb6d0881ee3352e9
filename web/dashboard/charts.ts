/**
 * One uPlot chart a metric of the selected device. uPlot (~50 KB minified, canvas, no
 * dependencies) redraws thousands of points in well under a millisecond, which is why it was chosen
 * over heavier SVG libraries: the page redraws at most once an animation frame.
 */
import uPlot from '../vendor/uPlot.esm.js';
import type { DeviceHistory } from './history.js';

const COLORS = ['#2f7ed8', '#e4572e', '#29a36a', '#a259c4', '#f0a202', '#17a2b8', '#d63384', '#6c757d'];

export class ChartPanel {
  private charts = new Map<string, { plot: uPlot; box: HTMLElement }>();
  private device: string | undefined;
  private drawnVersion = -1;
  private metricsKey = '';

  constructor(private readonly container: HTMLElement) {
    window.addEventListener('resize', () => this.resize());
  }

  /** Shows `device`'s history; rebuilds the charts when the device or its metric set changes. */
  render(device: string | undefined, history: DeviceHistory | undefined): void {
    const metrics = history ? [...history.series.keys()] : [];
    const key = metrics.join('\u0000');
    if (device !== this.device || key !== this.metricsKey) {
      this.destroy();
      this.device = device;
      this.metricsKey = key;
      this.drawnVersion = -1;
      if (!device) {
        this.container.innerHTML = '<p class="empty">No device selected.</p>';
        return;
      }
      if (metrics.length === 0) {
        this.container.innerHTML = '<p class="empty">Waiting for telemetry…</p>';
        return;
      }
      this.container.textContent = '';
      for (const [i, metric] of metrics.entries())
        this.create(metric, COLORS[i % COLORS.length] ?? '#2f7ed8');
    }
    if (!history || history.version === this.drawnVersion) return;
    this.drawnVersion = history.version;
    for (const [metric, { plot, box }] of this.charts) {
      const column = history.series.get(metric) ?? [];
      plot.setData([history.times, column] as uPlot.AlignedData);
      // For tests and people: how many points and the newest time drawn.
      box.dataset['points'] = String(history.times.length);
      box.dataset['firstTime'] = String(history.times[0] ?? '');
      box.dataset['lastTime'] = String(history.times.at(-1) ?? '');
      const latest = column.at(-1);
      const value = box.querySelector('.value');
      if (value) value.textContent = latest === null || latest === undefined ? '' : formatValue(latest);
    }
  }

  private create(metric: string, color: string): void {
    const box = document.createElement('section');
    box.className = 'chart';
    box.dataset['metric'] = metric;
    const title = document.createElement('h3');
    const name = document.createElement('span');
    name.textContent = metric;
    const value = document.createElement('span');
    value.className = 'value';
    title.append(name, value);
    box.append(title);
    this.container.append(box);
    const plot = new uPlot(
      {
        width: this.width(),
        height: 160,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        series: [{}, { label: metric, stroke: color, width: 1.5, fill: `${color}1a`, spanGaps: true }],
        axes: [{ stroke: '#889' }, { stroke: '#889', size: 56 }],
      },
      [[], []],
      box,
    );
    this.charts.set(metric, { plot, box });
  }

  private width(): number {
    return Math.max(240, this.container.clientWidth - 8);
  }

  private resize(): void {
    const width = this.width();
    for (const { plot } of this.charts.values()) plot.setSize({ width, height: 160 });
  }

  private destroy(): void {
    for (const { plot } of this.charts.values()) plot.destroy();
    this.charts.clear();
    this.container.textContent = '';
  }
}

function formatValue(v: number): string {
  return Math.abs(v) >= 1000 || Number.isInteger(v) ? String(Math.round(v * 100) / 100) : v.toPrecision(4);
}
