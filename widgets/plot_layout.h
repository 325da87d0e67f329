#pragma once

class QCPColorScale;
class QCPTextElement;
class QCustomPlot;

// Moves the plot's legend out of its axis rect into a row of its own under the plot, entries side
// by side, so that it never hides a data point; and shows it.
void placeLegendBelow(QCustomPlot& plot);

// Lays out a heatmap's frame, as every heatmap of the studio has it: `title` in a row above the
// axis rect, `scale` (a log colour bar with decade ticks) at its right, aligned with it.
void placeTitleAndLogScale(QCustomPlot& plot, QCPTextElement* title, QCPColorScale* scale);
