#include "application_setup.h"

#include <QApplication>
#include <QIcon>

void installApplicationIcon() {
    Q_INIT_RESOURCE(quantlens);
    QApplication::setWindowIcon(QIcon(":/icons/quantlens.png"));
}
