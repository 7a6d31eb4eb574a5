// The drawing screen's shortcut sheet: the keys of the tool in hand and the ones that work
// with every tool, and nothing that does not apply (no brush keys while drawing boxes).
import type { TaskType } from "../../api";
import type { ShapeTool } from "../../canvas/shapes";
import { hotkeyRange } from "./hotkeys";
import { UNDO_SHORTCUTS } from "./undo";

export type Tool = ShapeTool | "brush" | "eraser";

export const TOOL_NAMES: Record<Tool, string> = {
  box: "Box", polygon: "Polygon", select: "Select", pan: "Pan", brush: "Brush", eraser: "Eraser",
};

const SHAPE_TOOLS: Tool[] = ["box", "polygon", "select"];

/** [keys, what they do] for the tool in hand, then the general keys. */
export function drawShortcuts(task: TaskType, tool: Tool, hotkeys: (string | null)[]): [string, string][] {
  const keys = hotkeyRange(hotkeys);
  const own: [string, string, Tool[]][] = [
    ["drag", "draw a box", ["box"]],
    ["click", "add a point", ["polygon"]],
    ["click the first point, Enter, double-click", "close the polygon", ["polygon"]],
    ["Esc", "cancel the shape being drawn", ["box", "polygon"]],
    ["double-click an edge", "insert a vertex", ["polygon", "select"]],
    ["click, drag", "select a shape, move it", ["select"]],
    ["drag a corner or a vertex", "resize, reshape", ["select"]],
    ["right-click a vertex", "delete it", ["select"]],
    ["Delete", "delete the selected shape", ["select"]],
    ["Esc", "deselect", ["select"]],
    [`Shift+label key (${keys})`, "relabel the selected shape", SHAPE_TOOLS],
    ["click a label", "choose it; with a shape selected, relabel that shape too", SHAPE_TOOLS],
    ["drag", "paint with the label", ["brush"]],
    ["drag", "erase", ["eraser"]],
    ["[ / ]", "smaller / larger brush", ["brush", "eraser"]],
    ["drag", "pan", ["pan"]],
  ];
  const tools = task === "semantic" ? "R / E / H" : task === "bbox" ? "B / V / H" : "P / V / H";
  const toolText = task === "semantic" ? "brush, eraser, pan tool" : task === "bbox" ? "box, select, pan tool"
    : "polygon, select, pan tool";
  const general: [string, string][] = [
    [`label key (${keys})`, task === "semantic" ? "choose the label to paint with" : "choose the label of the next shape"],
    [tools, toolText],
    ...UNDO_SHORTCUTS,
    ["F", "fit the image"],
    ["Space + drag, wheel", "pan, zoom"],
    ["Ctrl+Enter", "submit"],
    ["?", "this sheet"],
  ];
  return [...own.filter(([, , only]) => only.includes(tool)).map(([k, w]): [string, string] => [k, w]), ...general];
}
