#include "export_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QStandardItemModel>
#include <QToolButton>

ExportDialog::ExportDialog(const QStringList& runs, const QList<ExportFormat>& formats,
                           Availability unavailable, QWidget* parent)
    : QDialog(parent), formats_(formats), unavailable_(std::move(unavailable)), run_(new QComboBox),
      format_(new QComboBox), directory_(new QLineEdit), problem_(new QLabel),
      buttons_(new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel)) {
    setWindowTitle(tr("Export Quantized Model"));
    run_->setObjectName("exportRun");
    run_->addItems(runs);
    format_->setObjectName("exportFormat");
    for (const ExportFormat& format : formats_)
        format_->addItem(format.label);
    directory_->setObjectName("exportDirectory");
    directory_->setPlaceholderText(tr("a new or empty directory"));
    problem_->setObjectName("exportProblem");
    problem_->setWordWrap(true);
    problem_->setStyleSheet("color: #b00020");
    auto* browse = new QToolButton;
    browse->setText("…");
    auto* directoryRow = new QHBoxLayout;
    directoryRow->addWidget(directory_, 1);
    directoryRow->addWidget(browse);

    auto* form = new QFormLayout(this);
    form->addRow(tr("Run"), run_);
    form->addRow(tr("Format"), format_);
    form->addRow(tr("Directory"), directoryRow);
    form->addRow(problem_);
    form->addRow(buttons_);

    connect(browse, &QToolButton::clicked, this, [this] {
        const QString directory =
            QFileDialog::getSaveFileName(this, tr("Export To Directory"), directory_->text());
        if (!directory.isEmpty()) directory_->setText(directory);
    });
    connect(directory_, &QLineEdit::textChanged, this, &ExportDialog::updateAcceptable);
    connect(run_, &QComboBox::currentIndexChanged, this, &ExportDialog::updateAcceptable);
    connect(format_, &QComboBox::currentIndexChanged, this, &ExportDialog::updateAcceptable);
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

void ExportDialog::setFormat(const QString& key) {
    for (int i = 0; i < formats_.size(); ++i)
        if (formats_[i].key == key) format_->setCurrentIndex(i);
}

void ExportDialog::setDirectory(const QString& directory) {
    directory_->setText(directory);
}

QString ExportDialog::problem() const {
    return problem_->text();
}

void ExportDialog::updateAcceptable() {
    // Formats the run cannot be written in are greyed out with the reason as their tooltip; one
    // still chosen (the run changed under it) says why in the dialog.
    const int run = run_->currentIndex(), format = format_->currentIndex();
    auto* items = qobject_cast<QStandardItemModel*>(format_->model());
    QString problem;
    for (int i = 0; i < formats_.size(); ++i) {
        const QString why =
            unavailable_ && run >= 0 ? unavailable_(run, formats_[i].key) : QString();
        items->item(i)->setEnabled(why.isEmpty());
        items->item(i)->setToolTip(why);
        if (i == format) problem = why;
    }
    problem_->setText(problem);
    problem_->setVisible(!problem.isEmpty());
    buttons_->button(QDialogButtonBox::Ok)
        ->setEnabled(run >= 0 && format >= 0 && problem.isEmpty() && !directory_->text().isEmpty());
}
