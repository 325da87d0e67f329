#include "device_picker.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QSignalBlocker>
#include <QStandardItemModel>

DevicePicker::DevicePicker(QWidget* parent) : QWidget(parent), combo_(new QComboBox) {
    combo_->setObjectName("devicePicker");
    combo_->setSizeAdjustPolicy(QComboBox::AdjustToContents);
    combo_->addItem(tr("CPU"), QString("cpu"));
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(new QLabel(tr("Run on")));
    layout->addWidget(combo_, 1);
    connect(combo_, &QComboBox::activated, this, [this] { emit deviceChosen(currentDevice()); });
}

void DevicePicker::setChoices(const QList<DeviceChoice>& choices) {
    const QString previous = currentDevice();
    {
        const QSignalBlocker blocker(combo_);
        combo_->clear();
        auto* model = qobject_cast<QStandardItemModel*>(combo_->model());
        for (const DeviceChoice& choice : choices) {
            combo_->addItem(choice.label, choice.id);
            const int row = combo_->count() - 1;
            combo_->setItemData(row, choice.detail, Qt::ToolTipRole);
            if (!choice.usable) model->item(row)->setEnabled(false);
        }
    }
    if (!setCurrentDevice(previous)) {
        combo_->setCurrentIndex(0);
        emit deviceChosen(currentDevice());
    }
}

bool DevicePicker::setCurrentDevice(const QString& id) {
    const int row = combo_->findData(id);
    auto* model = qobject_cast<QStandardItemModel*>(combo_->model());
    if (row < 0 || !model->item(row)->isEnabled()) return false;
    combo_->setCurrentIndex(row);
    return true;
}

QString DevicePicker::currentDevice() const {
    return combo_->currentData().toString();
}
