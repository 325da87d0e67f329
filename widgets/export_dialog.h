#pragma once

#include <QDialog>
#include <QList>
#include <QString>

#include <functional>

class QComboBox;
class QDialogButtonBox;
class QLabel;
class QLineEdit;

// What to export, where, and in which of the formats the engine offers.
struct ExportRequest {
    int run = -1;   // index into the runs the dialog listed
    QString format; // a format's key, e.g. "dense-f16"
    QString directory;
};

// An export format as the dialog lists it.
struct ExportFormat {
    QString key;
    QString label;
};

// Asks which run to export, in which format and to which directory; OK stays disabled until all
// three are chosen and the run can be written in the format. It knows formats only by their keys
// and labels, and asks `unavailable` which runs a format cannot hold, so new engine writers need
// no change here.
class ExportDialog : public QDialog {
    Q_OBJECT

public:
    // Why `run` cannot be exported as format `key`, as a sentence, or empty when it can.
    using Availability = std::function<QString(int run, const QString& key)>;

    ExportDialog(const QStringList& runs, const QList<ExportFormat>& formats,
                 Availability unavailable = {}, QWidget* parent = nullptr);

    ExportRequest request() const;
    void setRun(int run);
    void setFormat(const QString& key);
    void setDirectory(const QString& directory);
    // Why the chosen run cannot be written in the chosen format; empty when it can.
    QString problem() const;

private:
    void updateAcceptable();

    QList<ExportFormat> formats_;
    Availability unavailable_;
    QComboBox* run_;
    QComboBox* format_;
    QLineEdit* directory_;
    QLabel* problem_;
    QDialogButtonBox* buttons_;
};
