// The image stage: zoom (wheel, pinch), pan (drag with the pan tool, the middle button or
// space held), fit, brightness/contrast, and pointer events turned into image pixels for
// the drawing tools. Overlays are drawn in image pixels inside the same transform.
import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

export interface Point {
  x: number;
  y: number;
}

export interface View {
  scale: number;
  tx: number;
  ty: number;
}

export type PointerKind = "down" | "move" | "up";

export interface StageProps {
  src: string;
  /** The accessible name of the canvas (what it shows, for screen readers). */
  label: string;
  brightness: number;
  contrast: number;
  /** Return true when a tool used the event (otherwise a drag pans). */
  onPointer?: (kind: PointerKind, p: Point, e: PointerEvent, view: View) => boolean;
  onDoubleClick?: (p: Point, view: View) => void;
  onLeave?: () => void;
  onSize?: (w: number, h: number) => void;
  overlay?: (view: View, size: { w: number; h: number }) => ComponentChildren;
  under?: ComponentChildren; // drawn above the image, below the overlay (the mask)
  cursor?: string;
  fitSignal?: number; // bump to fit again
}

export function Stage(props: StageProps) {
  const box = useRef<HTMLDivElement>(null);
  const [view, setView] = useState<View>({ scale: 1, tx: 0, ty: 0 });
  const [size, setSize] = useState<{ w: number; h: number } | null>(null);
  // Which image has loaded, rather than a "loading" flag set in an effect: an image already in
  // the cache (several stages showing one image, as review's side by side does) can fire its
  // load event before such an effect runs, and the spinner would then never go.
  const [loaded, setLoaded] = useState<string | null>(null);
  const loading = loaded !== props.src;
  const drag = useRef<{ id: number; x: number; y: number; tx: number; ty: number; tool: boolean } | null>(null);
  const pointers = useRef(new Map<number, Point>());
  const pinch = useRef<{ d: number; scale: number; cx: number; cy: number; tx: number; ty: number } | null>(null);
  const space = useRef(false);

  const fit = (w: number, h: number) => {
    const el = box.current;
    if (!el) return;
    const r = el.getBoundingClientRect();
    const scale = Math.min(r.width / w, r.height / h) * 0.98;
    setView({ scale, tx: (r.width - w * scale) / 2, ty: (r.height - h * scale) / 2 });
  };

  useLayoutEffect(() => {
    if (size) fit(size.w, size.h);
  }, [props.fitSignal]);
  useEffect(() => {
    const down = (e: KeyboardEvent) => {
      if (e.code === "Space" && !(e.target instanceof HTMLInputElement)) space.current = true;
    };
    const up = (e: KeyboardEvent) => {
      if (e.code === "Space") space.current = false;
    };
    addEventListener("keydown", down);
    addEventListener("keyup", up);
    return () => {
      removeEventListener("keydown", down);
      removeEventListener("keyup", up);
    };
  }, []);

  const toImage = (e: { clientX: number; clientY: number }): Point => {
    const r = box.current!.getBoundingClientRect();
    return { x: (e.clientX - r.left - view.tx) / view.scale, y: (e.clientY - r.top - view.ty) / view.scale };
  };

  const onWheel = (e: WheelEvent) => {
    e.preventDefault();
    const r = box.current!.getBoundingClientRect();
    const cx = e.clientX - r.left, cy = e.clientY - r.top;
    const factor = Math.exp(-e.deltaY * 0.0015);
    setView((v) => {
      const scale = Math.min(40, Math.max(0.02, v.scale * factor));
      const k = scale / v.scale;
      return { scale, tx: cx - (cx - v.tx) * k, ty: cy - (cy - v.ty) * k };
    });
  };

  const onDown = (e: PointerEvent) => {
    box.current!.setPointerCapture(e.pointerId);
    pointers.current.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (pointers.current.size === 2) {
      const [a, b] = [...pointers.current.values()];
      const r = box.current!.getBoundingClientRect();
      pinch.current = { d: Math.hypot(a.x - b.x, a.y - b.y), scale: view.scale,
        cx: (a.x + b.x) / 2 - r.left, cy: (a.y + b.y) / 2 - r.top, tx: view.tx, ty: view.ty };
      drag.current = null;
      return;
    }
    const panning = e.button === 1 || space.current;
    const used = !panning && e.button === 0 && !!props.onPointer?.("down", toImage(e), e, view);
    drag.current = { id: e.pointerId, x: e.clientX, y: e.clientY, tx: view.tx, ty: view.ty, tool: used };
  };

  const onMove = (e: PointerEvent) => {
    if (pointers.current.has(e.pointerId)) pointers.current.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (pinch.current && pointers.current.size === 2) {
      const [a, b] = [...pointers.current.values()];
      const p = pinch.current;
      const scale = Math.min(40, Math.max(0.02, p.scale * Math.hypot(a.x - b.x, a.y - b.y) / p.d));
      const k = scale / p.scale;
      setView({ scale, tx: p.cx - (p.cx - p.tx) * k, ty: p.cy - (p.cy - p.ty) * k });
      return;
    }
    const d = drag.current;
    if (d && d.id === e.pointerId && !d.tool) {
      setView((v) => ({ ...v, tx: d.tx + e.clientX - d.x, ty: d.ty + e.clientY - d.y }));
      return;
    }
    props.onPointer?.("move", toImage(e), e, view);
  };

  const onUp = (e: PointerEvent) => {
    pointers.current.delete(e.pointerId);
    if (pointers.current.size < 2) pinch.current = null;
    const d = drag.current;
    if (d && d.id === e.pointerId) {
      drag.current = null;
      if (d.tool) props.onPointer?.("up", toImage(e), e, view);
    }
  };

  return (
    <div class="stage" ref={box} onWheel={onWheel} onPointerDown={onDown} onPointerMove={onMove}
      onPointerUp={onUp} onPointerCancel={onUp} onPointerLeave={() => props.onLeave?.()}
      onContextMenu={(e) => e.preventDefault()} onDblClick={(e) => props.onDoubleClick?.(toImage(e), view)}
      style={{ cursor: space.current ? "grab" : props.cursor }}
      data-testid="stage" role="application" aria-label={props.label} tabIndex={0}>
      <div class="layer" style={{ transform: `translate(${view.tx}px, ${view.ty}px) scale(${view.scale})` }}>
        <img src={props.src} alt="" draggable={false}
          style={{ filter: `brightness(${props.brightness}) contrast(${props.contrast})` }}
          onLoad={(e) => {
            const img = e.currentTarget;
            const s = { w: img.naturalWidth, h: img.naturalHeight };
            setSize(s);
            setLoaded(props.src);
            fit(s.w, s.h);
            props.onSize?.(s.w, s.h);
          }} />
        {size && props.under}
        {size && (
          <svg width={size.w} height={size.h} viewBox={`0 0 ${size.w} ${size.h}`}>
            {props.overlay?.(view, size)}
          </svg>
        )}
      </div>
      {loading && <div class="spinner" style="position:absolute;left:50%;top:50%" />}
    </div>
  );
}
