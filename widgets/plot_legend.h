#pragma once

class QCustomPlot;

// Moves the plot's legend out of its axis rect into a row of its own under the plot, entries side
// by side, so that it never hides a data point; and shows it.
void placeLegendBelow(QCustomPlot& plot);
