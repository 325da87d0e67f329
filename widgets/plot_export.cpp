#include "plot_export.h"

#include <QFileInfo>
#include <QObject>
#include <QSaveFile>
#include <qcustomplot.h>

QString exportPlot(QCustomPlot& plot, const QString& csv, const QString& path) {
    const QString suffix = QFileInfo(path).suffix().toLower();
    bool written = false;
    if (suffix == "png") {
        written = plot.savePng(path, 0, 0, 2.0); // twice the screen's pixels, for print
    } else if (suffix == "pdf") {
        written = plot.savePdf(path);
    } else if (suffix == "csv") {
        QSaveFile file(path); // atomic, like every engine write
        written = file.open(QIODevice::WriteOnly | QIODevice::Text) &&
                  file.write(csv.toUtf8()) >= 0 && file.commit();
    } else {
        return QObject::tr("%1: choose a .png, .pdf or .csv file").arg(path);
    }
    return written ? QString() : QObject::tr("%1: could not be written").arg(path);
}
