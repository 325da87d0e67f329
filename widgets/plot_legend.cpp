#include "plot_legend.h"

#include <qcustomplot.h>

void placeLegendBelow(QCustomPlot& plot) {
    auto* row = new QCPLayoutGrid;
    QCPLayoutGrid* layout = plot.plotLayout();
    layout->addElement(layout->rowCount(), 0, row);
    row->setMargins(QMargins(5, 0, 5, 5));
    row->addElement(0, 0, plot.legend); // takes it out of the axis rect's inset
    plot.legend->setFillOrder(QCPLegend::foColumnsFirst);
    plot.legend->setVisible(true);
    layout->setRowStretchFactor(layout->rowCount() - 1, 0.001); // only as tall as the legend
}
