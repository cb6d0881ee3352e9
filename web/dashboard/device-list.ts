/**
 * The device list, virtualised: whatever the fleet size, the DOM holds only the rows in view (plus a
 * few), so 1,000 or 100,000 devices cost the same to render. Rows have a fixed height; a spacer
 * gives the scrollbar its full length.
 */
import type { DeviceView } from '../client/live-client.js';
import { lastSeenText } from './format.js';

export const ROW_HEIGHT = 30;
const OVERSCAN = 6;

export interface DeviceListOptions {
  readonly container: HTMLElement;
  readonly onSelect: (device: string) => void;
  /** The view scrolled: the owner schedules a render. */
  readonly onScroll: () => void;
}

export class DeviceList {
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly rows: HTMLElement;
  private ids: string[] = [];
  private filter = '';
  private selected: string | undefined;

  constructor(options: DeviceListOptions) {
    this.viewport = options.container;
    this.spacer = document.createElement('div');
    this.spacer.className = 'spacer';
    this.rows = document.createElement('div');
    this.rows.className = 'rows';
    this.viewport.append(this.spacer, this.rows);
    this.viewport.addEventListener('scroll', () => options.onScroll(), { passive: true });
    this.rows.addEventListener('click', (event) => {
      const row = (event.target as HTMLElement).closest<HTMLElement>('[data-device]');
      const id = row?.dataset['device'];
      if (id) options.onSelect(id);
    });
  }

  /** The ids shown, in order (after the filter). */
  get visibleIds(): readonly string[] {
    return this.ids;
  }

  setFilter(text: string): void {
    this.filter = text.trim().toLowerCase();
  }

  setSelected(device: string | undefined): void {
    this.selected = device;
  }

  /**
   * Renders the rows in view. `sortedIds` is every device id, sorted; `now` drives "last seen".
   * Called at most once an animation frame.
   */
  render(sortedIds: readonly string[], devices: ReadonlyMap<string, DeviceView>, now: number): void {
    this.ids = this.filter
      ? sortedIds.filter((id) => id.toLowerCase().includes(this.filter))
      : [...sortedIds];
    this.spacer.style.height = `${this.ids.length * ROW_HEIGHT}px`;
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.ids.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    this.rows.style.transform = `translateY(${first * ROW_HEIGHT}px)`;

    const fragment = document.createDocumentFragment();
    const children = this.rows.children;
    let i = 0;
    for (let index = first; index < last; index++, i++) {
      const id = this.ids[index];
      if (id === undefined) break;
      const view = devices.get(id);
      // Reuse existing row elements; only their text and attributes change.
      let row = children[i] as HTMLElement | undefined;
      if (!row) {
        row = document.createElement('div');
        row.className = 'device-row';
        row.innerHTML = '<span class="dot"></span><span class="id"></span><span class="seen"></span>';
        fragment.append(row);
      }
      const state = view?.state ?? 'unspecified';
      row.dataset['device'] = id;
      row.dataset['state'] = state;
      row.classList.toggle('selected', id === this.selected);
      const [dot, name, seen] = row.children as unknown as [HTMLElement, HTMLElement, HTMLElement];
      dot.title = state;
      if (name.textContent !== id) name.textContent = id;
      const seenText = lastSeenText(view?.lastSeen, now);
      if (seen.textContent !== seenText) seen.textContent = seenText;
    }
    this.rows.append(fragment);
    while (this.rows.children.length > i) this.rows.lastElementChild?.remove();
  }
}
