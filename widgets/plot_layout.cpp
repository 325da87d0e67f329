#include "plot_layout.h"

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

void placeTitleAndLogScale(QCustomPlot& plot, QCPTextElement* title, QCPColorScale* scale) {
    plot.plotLayout()->insertRow(0);
    plot.plotLayout()->addElement(0, 0, title);
    plot.plotLayout()->addElement(1, 1, scale);
    auto* margins = new QCPMarginGroup(&plot);
    plot.axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
    scale->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
    scale->setType(QCPAxis::atRight);
    scale->setDataScaleType(QCPAxis::stLogarithmic);
    scale->axis()->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    scale->axis()->setNumberFormat("eb");
    scale->axis()->setNumberPrecision(0);
}
