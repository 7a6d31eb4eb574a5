// Moving around the classification grid with the keyboard: arrow keys go to the next cell in
// reading order (left/right) or the cell above/below (up/down), Home and End to the ends.

/** The cell an arrow key moves to from `at` in a grid of `n` cells `cols` wide, or null
 * when the key is not a move. */
export function moveTarget(key: string, at: number, n: number, cols: number): number | null {
  let to: number;
  switch (key) {
    case "ArrowLeft": to = at - 1; break;
    case "ArrowRight": to = at + 1; break;
    case "ArrowUp": to = at - cols; break;
    case "ArrowDown": to = at + cols; break;
    case "Home": to = 0; break;
    case "End": to = n - 1; break;
    default: return null;
  }
  return Math.min(n - 1, Math.max(0, to));
}

/** Columns for a page of n images: one, two (up to four), else three. */
export function columnsFor(n: number): number {
  return n <= 1 ? 1 : n <= 4 ? 2 : 3;
}
