#pragma once

#include <QTreeWidget>

namespace quantlens {
class Model;
struct TensorView;
} // namespace quantlens

// A read-only outline of a loaded model: its architecture numbers, then its tensors in forward
// order (embedding, one item per transformer block, final norm, head). Items keep the stored
// tensor name under Qt::UserRole so that later views can find the weights they point at.
class ModelSummaryView : public QTreeWidget {
    Q_OBJECT

public:
    enum Column { NameColumn, ShapeColumn, DTypeColumn, BytesColumn };

    explicit ModelSummaryView(QWidget* parent = nullptr);

    // Replaces what is shown; keeps no reference to `model`. clear() empties the view.
    void showModel(const quantlens::Model& model);

    QSize sizeHint() const override;

private:
    QTreeWidgetItem* addArchitecture(const quantlens::Model& model);
    QTreeWidgetItem* addTensor(QTreeWidgetItem* parent, const QString& label,
                               const quantlens::TensorView& tensor);
};
