// Zoom buttons for a stage: the same steps as the mouse wheel, about the stage's centre.
import type { RefObject } from "preact";

/** Send the stage inside `box` the wheel step a mouse would (the stage zooms on wheel events). */
export function zoomStage(box: HTMLElement | null, steps: number): void {
  const stage = box?.querySelector<HTMLElement>("[data-testid=stage]");
  if (!stage) return;
  const r = stage.getBoundingClientRect();
  stage.dispatchEvent(new WheelEvent("wheel", {
    deltaY: -240 * steps, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true, cancelable: true,
  }));
}

export function ZoomButtons({ box, onFit }: { box: RefObject<HTMLElement>; onFit: () => void }) {
  return (
    <>
      <button onClick={() => zoomStage(box.current, 1)} title="Zoom in (+)" data-testid="zoom-in">+</button>
      <button onClick={() => zoomStage(box.current, -1)} title="Zoom out (−)" data-testid="zoom-out">−</button>
      <button onClick={onFit} title="Fit the image (F)" data-testid="zoom-fit">Fit (F)</button>
    </>
  );
}
