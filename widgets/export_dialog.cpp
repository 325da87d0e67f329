#include "export_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLineEdit>
#include <QPushButton>
#include <QToolButton>

ExportDialog::ExportDialog(const QStringList& runs, const QList<ExportFormat>& formats,
                           QWidget* parent)
    : QDialog(parent), formats_(formats), run_(new QComboBox), format_(new QComboBox),
      directory_(new QLineEdit),
      buttons_(new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel)) {
    setWindowTitle(tr("Export Quantized Model"));
    run_->setObjectName("exportRun");
    run_->addItems(runs);
    format_->setObjectName("exportFormat");
    for (const ExportFormat& format : formats_)
        format_->addItem(format.label);
    directory_->setObjectName("exportDirectory");
    directory_->setPlaceholderText(tr("a new or empty directory"));
    auto* browse = new QToolButton;
    browse->setText("…");
    auto* directoryRow = new QHBoxLayout;
    directoryRow->addWidget(directory_, 1);
    directoryRow->addWidget(browse);

    auto* form = new QFormLayout(this);
    form->addRow(tr("Run"), run_);
    form->addRow(tr("Format"), format_);
    form->addRow(tr("Directory"), directoryRow);
    form->addRow(buttons_);

    connect(browse, &QToolButton::clicked, this, [this] {
        const QString directory =
            QFileDialog::getSaveFileName(this, tr("Export To Directory"), directory_->text());
        if (!directory.isEmpty()) directory_->setText(directory);
    });
    connect(directory_, &QLineEdit::textChanged, this, &ExportDialog::updateAcceptable);
    connect(buttons_, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons_, &QDialogButtonBox::rejected, this, &QDialog::reject);
    updateAcceptable();
}

ExportRequest ExportDialog::request() const {
    const int format = format_->currentIndex();
    return {run_->currentIndex(), format >= 0 ? formats_[format].key : QString(),
            directory_->text()};
}

void ExportDialog::setRun(int run) {
    run_->setCurrentIndex(run);
}

void ExportDialog::setDirectory(const QString& directory) {
    directory_->setText(directory);
}

void ExportDialog::updateAcceptable() {
    buttons_->button(QDialogButtonBox::Ok)
        ->setEnabled(run_->count() > 0 && format_->count() > 0 && !directory_->text().isEmpty());
}
