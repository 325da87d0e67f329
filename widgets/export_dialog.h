#pragma once

#include <QDialog>
#include <QList>
#include <QString>

class QComboBox;
class QDialogButtonBox;
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
// three are chosen. It knows formats only by their keys and labels, so new engine writers need no
// change here.
class ExportDialog : public QDialog {
    Q_OBJECT

public:
    ExportDialog(const QStringList& runs, const QList<ExportFormat>& formats,
                 QWidget* parent = nullptr);

    ExportRequest request() const;
    void setRun(int run);
    void setDirectory(const QString& directory);

private:
    void updateAcceptable();

    QList<ExportFormat> formats_;
    QComboBox* run_;
    QComboBox* format_;
    QLineEdit* directory_;
    QDialogButtonBox* buttons_;
};
